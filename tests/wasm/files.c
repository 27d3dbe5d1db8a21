/* files IN... OUT: copies the files IN, one after another, to OUT, upper-cased; an IN that is a folder
   gives the files in it, by name. Says what failed and exits 1 otherwise. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char data[65536];
static size_t total = 0;

static int read_file(const char *path) {
    FILE *in = fopen(path, "r");
    if (!in) {
        fprintf(stderr, "cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t size = fread(data + total, 1, sizeof data - total, in);
    fclose(in);
    total += size;
    printf("read %zu bytes from %s\n", size, path);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_folder(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        fprintf(stderr, "cannot list %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *names[256];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && count < 256) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            names[count++] = strdup(entry->d_name);
        }
    }
    closedir(dir);
    qsort(names, count, sizeof names[0], by_name);
    int failed = 0;
    for (size_t i = 0; i < count; i++) {
        char file[1024];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        failed |= read_file(file);
        free(names[i]);
    }
    return failed;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: files IN... OUT\n");
        return 2;
    }
    for (int i = 1; i < argc - 1; i++) {
        struct stat info;
        int is_folder = stat(argv[i], &info) == 0 && S_ISDIR(info.st_mode);
        if (is_folder ? read_folder(argv[i]) : read_file(argv[i])) return 1;
    }
    const char *out_path = argv[argc - 1];
    FILE *out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "cannot write %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < total; i++) fputc(toupper((unsigned char)data[i]), out);
    fclose(out);
    printf("wrote %s\n", out_path);
    return 0;
}
