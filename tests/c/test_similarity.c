/* similarity: each SIMD level against the scalar table. */
#include "ctest.h"

void ctest_similarity(ctest *t) {
    (void)t;
}
