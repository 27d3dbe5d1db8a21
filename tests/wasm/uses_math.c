/* Calls math::add, provided by the import module math.wasm (built from math.wat). */
#include <stdio.h>

__attribute__((import_module("math"), import_name("add"))) int add(int a, int b);

int main(void) {
    printf("2 + 3 = %d\n", add(2, 3));
    return 0;
}
