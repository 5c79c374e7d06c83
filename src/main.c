/* main.c - the rlaif executable. Everything lives in the library (src/cli.c). */
#include "rlaif/cli.h"

int main(int argc, char **argv) {
    return rlaif_main(argc, argv);
}
