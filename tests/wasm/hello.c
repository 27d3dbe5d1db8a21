/* Prints a greeting, then its arguments and environment, one per line (argv/env passing). */
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("hello from wasm\n");
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    for (char **variable = environ; *variable; variable++) printf("env %s\n", *variable);
    return 0;
}
