/* gemm_choice.h - which product path the engine's forward products run:
 * the chooser's table (src/engine/gemm_choose.c), as the phases fill, share
 * and record it. The engine only looks choices up; a job fills the table
 * before its first product (rlaif_model_gemm_calibrate on one rank, then
 * rlaif_gemm_choices_get / _set on every rank) so every rank and every
 * resume of it rounds the same way. A class the table lacks runs the fixed
 * rule (the engine's README, Precision). */
#ifndef RLAIF_ENGINE_GEMM_CHOICE_H
#define RLAIF_ENGINE_GEMM_CHOICE_H

#include <stddef.h>
#include <stdio.h>

#include "rlaif/engine/model.h"

typedef enum {
    RLAIF_PATH_SGEMM = 0,   /* cblas_sgemm split over the team (fp32) */
    RLAIF_PATH_SMALLM,      /* rlaif_smallm_gemm (fp32, M <= 64) */
    RLAIF_PATH_BF16,        /* rlaif_bf16_gemm_ex, A in fp32, W in bf16 */
    RLAIF_PATH_BF16_SMALLM, /* rlaif_bf16_smallm (M <= 64) */
    RLAIF_PATH_BF16_PACKED, /* rlaif_bf16_packed_gemm from weights packed once (decoding) */
    RLAIF_PATH_PACKED       /* rlaif_f32_packed_gemm from fp32 weights packed once (decoding) */
} rlaif_gemm_path;

#define RLAIF_GEMM_NPATH      6
#define RLAIF_GEMM_FORCE_NONE (-1)
/* The revision of the kernels' speed: part of the key of recorded and
 * cached tables, so timings of older kernels are not reused. Bump it when
 * a path's kernel changes (2: the few-row kernel streams at most 8 rows;
 * 3: weights on cache lines, one streaming kernel per row count; 4: four
 * weight rows at once in the w_trans 1 streaming kernel, one-row classes;
 * 5: that kernel up to 16 rows; 6: the fp32 packed path; 7: the packed path
 * prefetches the next K block; 8: the few-row tile kernel's columns handed
 * out guided, contiguous per thread; 9: the fp32 packed path a candidate
 * past 64 rows, timed at 128 and 256; 10: the fp32 packed path's panels
 * split statically, a contiguous run per thread; 11: a thread whose run is
 * done steals panels from the back of another's, team_runs.h; 12: the AMX
 * kernel accumulates whole blocks in C's tiles, no buffer pass). */
#define RLAIF_GEMM_KERNELS_REV 12

/* Times every product class a model of config cfg meets in precision
 * (RLAIF_PREC_*) that the table lacks: its linear layers at 1-64 rows
 * (decoding, one class per power of two) and at 128 and more (prefill,
 * training). In fp32 the classes past 64 rows only when frozen (the model
 * will be m->frozen, a local judge's): only its prefill, whose weights stay
 * packed, looks them up (the packed kernel against sgemm). A class with a
 * single candidate path is neither timed nor recorded (the fixed rule runs
 * it). On the calling thread (the timing is by its CPU time); nthreads is
 * recorded. Returns the number of classes timed. */
int rlaif_model_gemm_calibrate(const rlaif_model_config *cfg, int precision, int nthreads,
                               int frozen);

/* Bytes a frozen model run in batches of B rows holds beside the weights
 * (rlaif_model_decode_prepare): its packed copy of every linear layer's
 * weight (bf16: always; fp32: when the table names the packed path for one
 * of the model's products at 1..B rows or past 64, its prefill), 0 if it
 * packs nothing. For memory checks before a model is loaded (a model that
 * is not frozen packs for decoding only: at most this). */
size_t rlaif_model_decode_pack_bytes(const rlaif_model_config *cfg, int precision, int B);

/* RLAIF_GEMM_FORCE_NONE or a path every product runs where it is a
 * candidate (the config's model.gemm = <path>). */
void rlaif_gemm_force(int path);
const char *rlaif_gemm_path_name(rlaif_gemm_path p);
/* The path of a name (rlaif_gemm_path_name's), -1 if none. */
int rlaif_gemm_path_parse(const char *name);
/* One line per remembered choice: shape class, the times of each candidate,
 * the winner, the calibration's cost. */
void rlaif_gemm_choices_print(FILE *out);
/* The table as text / set from such text (so one rank's choices can be
 * broadcast and recorded): get writes at most len bytes and returns the
 * length needed; set returns 0, or -1 on a malformed line (table kept). */
size_t rlaif_gemm_choices_get(char *buf, size_t len);
int rlaif_gemm_choices_set(const char *buf);
void rlaif_gemm_choices_clear(void);
/* Forward products run on path p since start (the engine counts them). */
long long rlaif_gemm_runs(int path);

#endif
