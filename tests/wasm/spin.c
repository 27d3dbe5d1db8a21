/* Says it started, then spins forever without calling anything (timeouts and cancellation). */
#include <stdio.h>

volatile unsigned long long turns;

int main(void) {
    printf("spinning\n");
    fflush(stdout);
    for (;;) turns++;
}
