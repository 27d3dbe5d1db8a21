/* A reactor (no _start) with several exports: greet() is a valid entry point, add() takes parameters
   and answer() returns a result, so neither can be one. */
#include <stdio.h>

__attribute__((export_name("greet"))) void greet(void) {
    printf("greetings from greet\n");
}

__attribute__((export_name("add"))) int add(int a, int b) {
    return a + b;
}

__attribute__((export_name("answer"))) int answer(void) {
    return 42;
}
