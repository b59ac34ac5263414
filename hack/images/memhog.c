/* memhog MIB [random|text]: holds MIB MiB of memory filled with random or compressible bytes, then
 * prints a counter every 20 ms. Every 100 lines it re-reads the whole buffer and compares its checksum
 * with the one taken when it was filled: after a restore, a page that did not arrive intact ends it
 * with "CORRUPT" and exit status 3. A test workload for ferry's lab (static, no libc beyond libc.a). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t checksum(const uint64_t *words, size_t count) {
    uint64_t sum = 1469598103934665603ULL;
    for (size_t i = 0; i < count; i++) sum = (sum ^ words[i]) * 1099511628211ULL;
    return sum;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    int text = argc > 2 && strcmp(argv[2], "text") == 0;
    size_t count = mib * 1024 * 1024 / sizeof(uint64_t);
    uint64_t *words = malloc(count * sizeof(uint64_t));
    if (words == NULL) { perror("malloc"); return 1; }
    uint64_t state = (uint64_t)time(NULL) * 2654435761ULL + 88172645463325252ULL;
    for (size_t i = 0; i < count; i++) {
        if (text) {
            words[i] = 0x2e79727265662020ULL + (i % 64); /* "  ferry." and a little variation */
        } else {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            words[i] = state;
        }
    }
    uint64_t expected = checksum(words, count);
    struct timespec tick = {0, 20 * 1000 * 1000};
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned long n = 0;; n++) {
        printf("%lu\n", n);
        if (n % 100 == 99 && checksum(words, count) != expected) {
            printf("CORRUPT\n");
            return 3;
        }
        nanosleep(&tick, NULL);
    }
}
