#include "ctest.h"

#include <string.h>

int main(void) {
    unsigned usable = engram_levels_detected() & engram_levels_compiled();
    long failures = 0, checks = 0;
    for (int level = 0; level < ENGRAM_LEVEL_COUNT; level++) {
        if (!(usable & (1u << level))) continue;
        if (engram_level_select((engram_level)level) != 0) {
            fprintf(stderr, "cannot select %s\n", engram_level_name((engram_level)level));
            return 2;
        }
        ctest t = {engram_level_name((engram_level)level), 0, 0};
        ctest_similarity(&t);
        ctest_spread(&t);
        ctest_decay(&t);
        printf("%-7s %6ld checks, %ld failures\n", t.level, t.checks, t.failures);
        failures += t.failures;
        checks += t.checks;
    }
    if (checks == 0) {
        fprintf(stderr, "no checks ran\n");
        return 2;
    }
    return failures ? 1 : 0;
}
