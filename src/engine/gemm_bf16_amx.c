/* gemm_bf16_amx.c - the AMX-BF16 panel kernel of the bf16 products (stub). */
#include "config.h"
#include "gemm_bf16_x86.h"

int bf16_x86_amx(void) {
    return 0;
}

void bf16_panel_amx(const uint32_t *Ap, int ldp, int M, int nq, const uint32_t *Bp, float *C,
                    int ldc, int ncv, int mode, float beta) {
    bf16_panel_avx512(Ap, ldp, M, nq, Bp, C, ldc, ncv, mode, beta);
}
