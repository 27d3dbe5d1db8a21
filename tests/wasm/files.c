/* files IN OUT: copies the file IN to OUT, upper-cased; says what failed and exits 1 otherwise. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: files IN OUT\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        fprintf(stderr, "cannot read %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    char data[4096];
    size_t size = fread(data, 1, sizeof data, in);
    fclose(in);
    printf("read %zu bytes from %s\n", size, argv[1]);
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        fprintf(stderr, "cannot write %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < size; i++) fputc(toupper((unsigned char)data[i]), out);
    fclose(out);
    printf("wrote %s\n", argv[2]);
    return 0;
}
