// An LD_PRELOAD library for the power-loss tests (PowerLossTests.swift): it
// records, for files below POWERLOSS_ROOT, what a power failure could not take
// away, so the test can take away the rest after a SIGKILL.
//
// Model: a file's bytes are durable up to its size at its last fsync or
// fdatasync; anything written later is lost. Operations on names (create,
// rename, link, unlink, truncation by O_TRUNC) are taken as durable when they
// return. That is kinder than a real file system for names (an ext4 rename is
// only certain after the directory's fsync) and exact for data appended and
// synced the way RocksDB and ShardDB write (append, then sync). Overwrites in
// place of synced bytes are not modelled.
//
// The record is a text log at POWERLOSS_LOG, one line per event, each written
// with one write(2) on an O_APPEND descriptor (a line is whole or missing):
//   S <size> <path>    fsync/fdatasync of a regular file: durable up to <size>
//   T <path>           opened with O_TRUNC, or created: durable size 0
//   R <old>\t<new>     renamed
//   L <old>\t<new>     hard-linked
//   U <path>           unlinked
// Compiled by the test with the Swift toolchain's clang; not part of the package.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int log_fd = -1;
static char root[PATH_MAX];
static size_t root_length;

__attribute__((constructor)) static void powerloss_init(void) {
    const char *log = getenv("POWERLOSS_LOG");
    const char *dir = getenv("POWERLOSS_ROOT");
    if (!log || !dir || strlen(dir) >= sizeof(root)) return;
    strcpy(root, dir);
    root_length = strlen(root);
    log_fd = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void record(const char *line, size_t length) {
    if (log_fd < 0) return;
    int saved = errno;
    (void)syscall(SYS_write, log_fd, line, length);
    errno = saved;
}

static int below_root(const char *path) {
    return log_fd >= 0 && strncmp(path, root, root_length) == 0 && (path[root_length] == '/' || path[root_length] == 0);
}

// The absolute path of `path` as seen from `dirfd` (AT_FDCWD or a directory descriptor); 0 when unknown.
static int absolute(int dirfd, const char *path, char *out) {
    if (!path) return 0;
    if (path[0] == '/') { snprintf(out, PATH_MAX, "%s", path); return 1; }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof(base))) return 0;
    } else {
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof(base) - 1);
        if (n <= 0) return 0;
        base[n] = 0;
    }
    snprintf(out, PATH_MAX, "%s/%s", base, path);
    return 1;
}

static int path_of_fd(int fd, char *out) {
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n <= 0) return 0;
    out[n] = 0;
    return 1;
}

static void record_path(char kind, const char *path) {
    if (!below_root(path)) return;
    char line[PATH_MAX + 8];
    int n = snprintf(line, sizeof(line), "%c %s\n", kind, path);
    if (n > 0 && (size_t)n < sizeof(line)) record(line, (size_t)n);
}

static void record_pair(char kind, const char *from, const char *to) {
    if (!below_root(from) && !below_root(to)) return;
    char line[2 * PATH_MAX + 8];
    int n = snprintf(line, sizeof(line), "%c %s\t%s\n", kind, from, to);
    if (n > 0 && (size_t)n < sizeof(line)) record(line, (size_t)n);
}

#define REAL(name) static __typeof__(&name) real_##name; if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

// Syncs: the size before the call is what the call makes durable (a write racing
// with it may or may not be).
static int synced(int fd, int (*sync)(int)) {
    struct stat before;
    int known = fstat(fd, &before) == 0 && S_ISREG(before.st_mode);
    int result = sync(fd);
    if (result == 0 && known) {
        char path[PATH_MAX];
        if (path_of_fd(fd, path) && below_root(path)) {
            char line[PATH_MAX + 40];
            int n = snprintf(line, sizeof(line), "S %lld %s\n", (long long)before.st_size, path);
            if (n > 0 && (size_t)n < sizeof(line)) record(line, (size_t)n);
        }
    }
    return result;
}

int fsync(int fd) { REAL(fsync); return synced(fd, real_fsync); }
int fdatasync(int fd) { REAL(fdatasync); return synced(fd, real_fdatasync); }

// Opens that create or truncate.
static void opened(int result, int dirfd, const char *path, int flags) {
    if (result < 0 || !(flags & (O_CREAT | O_TRUNC))) return;
    char full[PATH_MAX];
    if (!absolute(dirfd, path, full)) return;
    struct stat st;
    // A file that existed and kept its bytes (O_CREAT alone) changes nothing.
    if (!(flags & O_TRUNC) && fstat(result, &st) == 0 && st.st_size > 0) return;
    record_path('T', full);
}

static mode_t mode_of(int flags, va_list args) {
    return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(args, int) : 0;
}

// The four opens, each passing its mode on (only read with O_CREAT or O_TMPFILE).
#define OPEN(name, at_parameter, at_argument, at) \
    int name(at_parameter const char *path, int flags, ...) { \
        REAL(name); \
        va_list args; va_start(args, flags); mode_t mode = mode_of(flags, args); va_end(args); \
        int result = real_##name(at_argument path, flags, mode); \
        opened(result, at, path, flags); \
        return result; \
    }
#define NOTHING
#define DIRFD_PARAMETER int dirfd,
#define DIRFD_ARGUMENT dirfd,
OPEN(open, NOTHING, NOTHING, AT_FDCWD)
OPEN(open64, NOTHING, NOTHING, AT_FDCWD)
OPEN(openat, DIRFD_PARAMETER, DIRFD_ARGUMENT, dirfd)
OPEN(openat64, DIRFD_PARAMETER, DIRFD_ARGUMENT, dirfd)
int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
// Not wrapped: __open_2 and friends, which _FORTIFY_SOURCE builds call for opens
// without O_CREAT. They create nothing; one with O_TRUNC would go unrecorded (the
// file would keep its old synced size), but RocksDB and ShardDB truncate only
// with O_CREAT.

static void renamed(int result, int olddirfd, const char *oldpath, int newdirfd, const char *newpath, char kind) {
    if (result != 0) return;
    char from[PATH_MAX], to[PATH_MAX];
    if (absolute(olddirfd, oldpath, from) && absolute(newdirfd, newpath, to)) record_pair(kind, from, to);
}

int rename(const char *oldpath, const char *newpath) {
    REAL(rename);
    int result = real_rename(oldpath, newpath);
    renamed(result, AT_FDCWD, oldpath, AT_FDCWD, newpath, 'R');
    return result;
}
int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    REAL(renameat);
    int result = real_renameat(olddirfd, oldpath, newdirfd, newpath);
    renamed(result, olddirfd, oldpath, newdirfd, newpath, 'R');
    return result;
}
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    REAL(renameat2);
    int result = real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
    renamed(result, olddirfd, oldpath, newdirfd, newpath, 'R');
    return result;
}
int link(const char *oldpath, const char *newpath) {
    REAL(link);
    int result = real_link(oldpath, newpath);
    renamed(result, AT_FDCWD, oldpath, AT_FDCWD, newpath, 'L');
    return result;
}
int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags) {
    REAL(linkat);
    int result = real_linkat(olddirfd, oldpath, newdirfd, newpath, flags);
    renamed(result, olddirfd, oldpath, newdirfd, newpath, 'L');
    return result;
}
int unlink(const char *path) {
    REAL(unlink);
    int result = real_unlink(path);
    char full[PATH_MAX];
    if (result == 0 && absolute(AT_FDCWD, path, full)) record_path('U', full);
    return result;
}
int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    int result = real_unlinkat(dirfd, path, flags);
    char full[PATH_MAX];
    if (result == 0 && !(flags & AT_REMOVEDIR) && absolute(dirfd, path, full)) record_path('U', full);
    return result;
}
