/* decay: each SIMD level against the scalar table. */
#include "ctest.h"

void ctest_decay(ctest *t) {
    (void)t;
}
