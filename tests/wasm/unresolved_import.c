/* Imports env::missing_function, which nothing provides. */
#include <stdio.h>

__attribute__((import_module("env"), import_name("missing_function"))) int missing_function(void);

int main(void) {
    printf("%d\n", missing_function());
    return 0;
}
