/* check_main.h - shared main() for Check test programs: MPI_Init, run the
 * suite without forking (Check's fork mode crashes under MPI), print the
 * summary, agree on the result across ranks, exit non-zero on any failure. */
#ifndef RLAIF_CHECK_MAIN_H
#define RLAIF_CHECK_MAIN_H

#include <check.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdlib.h>

static Suite *make_suite(void);

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    SRunner *sr = srunner_create(make_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr), any = 0;
    srunner_free(sr);
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
