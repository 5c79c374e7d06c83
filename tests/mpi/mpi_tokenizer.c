/* mpi_tokenizer.c - /tokenizer in a parallel HDF5 file: every rank of the
 * file's communicator calls rlaif_tokenizer_save (collective metadata, rank 0
 * writes the data), then every rank loads it back and gets the same ids. */
#include "rlaif/core/error.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

START_TEST(parallel_save_load) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char path[256];
    long pid = rank == 0 ? (long)getpid() : 0;
    MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    snprintf(path, sizeof path, "/tmp/mpi_tokenizer.%ld.h5", pid);

    rlaif_tokenizer *t, *t2 = NULL;
    ck_assert_int_eq(rlaif_tokenizer_byte(&t, "<|endoftext|>,<|pad|>"), 0);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    ck_assert_int_ge(f, 0);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(g, 0);
    int rc = rlaif_tokenizer_save(t, g);
    ck_assert_int_eq(rlaif_agree(MPI_COMM_WORLD, rc), 0);
    H5Gclose(g);
    H5Fclose(f);
    H5Pclose(fapl);

    /* every rank reads it back serially */
    ck_assert_int_eq(rlaif_tokenizer_load_file(&t2, path), 0);
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(t2), 258);
    ck_assert_int_eq(rlaif_tokenizer_eos(t2), 256);
    const char *s = "rank-independent <|pad|> text \xE2\x82\xAC";
    rlaif_tokens a = {0}, b = {0};
    ck_assert_int_eq(rlaif_tokenizer_encode(t, s, strlen(s), RLAIF_TOK_SPECIAL, &a), 0);
    ck_assert_int_eq(rlaif_tokenizer_encode(t2, s, strlen(s), RLAIF_TOK_SPECIAL, &b), 0);
    ck_assert_uint_eq(a.n, b.n);
    ck_assert(!memcmp(a.ids, b.ids, a.n * sizeof *a.ids));
    /* and every rank saw the same ids */
    long sum = 0, all = 0;
    for (size_t i = 0; i < b.n; i++) sum += (long)(i + 1) * b.ids[i];
    MPI_Allreduce(&sum, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    ck_assert_int_eq(all, sum * size);
    rlaif_tokens_free(&a);
    rlaif_tokens_free(&b);
    rlaif_tokenizer_free(t);
    rlaif_tokenizer_free(t2);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) unlink(path);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("mpi_tokenizer");
    TCase *tc = tcase_create("parallel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, parallel_save_load);
    suite_add_tcase(s, tc);
    return s;
}

#include "check_main.h"
