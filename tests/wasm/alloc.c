/* alloc N: allocates and touches N MiB (at most 4096), 1 MiB at a time; aborts (a trap) when memory
   runs out. The blocks are kept and read back so the compiler cannot drop the allocations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1 << 20)
static char *blocks[4096];

int main(int argc, char **argv) {
    int wanted = argc > 1 ? atoi(argv[1]) : 0;
    if (wanted > 4096) wanted = 4096;
    for (int mib = 0; mib < wanted; mib++) {
        blocks[mib] = malloc(MIB);
        if (!blocks[mib]) {
            fprintf(stderr, "malloc failed after %d MiB\n", mib);
            fflush(stderr);
            abort();
        }
        memset(blocks[mib], mib & 0x7f, MIB);
    }
    unsigned long checksum = 0;
    for (int mib = 0; mib < wanted; mib++) checksum += (unsigned char)blocks[mib][mib];
    printf("allocated %d MiB (checksum %lu)\n", wanted, checksum);
    return 0;
}
