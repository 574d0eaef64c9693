/* spread: each SIMD level against the scalar table. */
#include "ctest.h"

void ctest_spread(ctest *t) {
    (void)t;
}
