/* main.c - the rlaif executable. Everything lives in the library (src/app/cli.c). */
#include "rlaif/app/cli.h"

int main(int argc, char **argv) {
    return rlaif_main(argc, argv);
}
