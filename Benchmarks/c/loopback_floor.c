/* What moving a file's bytes over loopback TCP costs by itself, with no framing, no tag, no
 * counting: the floor under copy mode's CPU on one machine. A sender process writes the file to
 * a receiver process (recv into one reused 4 MiB buffer) in 4 MiB parcels, four ways:
 *
 *   sendfile          sendfile(2) from the page cache
 *   read+sendfile     pread 256 KiB pieces (as for a tag), then sendfile the parcel
 *   read+send         pread 256 KiB pieces and sendmsg each (what a sealed connection does)
 *   read-4M+send      pread the whole parcel, then send it
 *
 * CPU-seconds per GB (1e9 bytes) of each process, from wait4, medians of N runs, the ways
 * interleaved. Usage: loopback_floor FILE [RUNS]   (make loopback-bench; docs/benchmarks.md) */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARCEL ((size_t)4 << 20)
#define PIECE ((size_t)256 << 10)
#define WAYS 4
#define MAX_RUNS 31

static const char *const way_names[WAYS] = {"sendfile", "read+sendfile", "read+send",
                                            "read-4M+send"};

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double cpu_seconds(const struct rusage *r) {
    return (double)r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6 + (double)r->ru_stime.tv_sec +
           r->ru_stime.tv_usec / 1e6;
}

static void send_all(int sock, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = send(sock, p, n, 0);
        if (w <= 0)
            die("send");
        p += w;
        n -= (size_t)w;
    }
}

static void sendfile_all(int sock, int fd, off_t offset, size_t n) {
    off_t end = offset + (off_t)n;
    while (offset < end)
        if (sendfile(sock, fd, &offset, (size_t)(end - offset)) <= 0)
            die("sendfile");
}

static void read_exact(int fd, uint8_t *p, size_t n, off_t offset) {
    if (pread(fd, p, n, offset) != (ssize_t)n)
        die("pread");
}

static void run_sender(int way, int fd, off_t size, const struct sockaddr_in *to) {
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0 || connect(sock, (const struct sockaddr *)to, sizeof *to) != 0)
        die("connect");
    uint8_t *buf = malloc(PARCEL);
    if (!buf)
        die("malloc");
    memset(buf, 1, PARCEL);
    for (off_t at = 0; at < size; at += (off_t)PARCEL) {
        size_t n = size - at < (off_t)PARCEL ? (size_t)(size - at) : PARCEL;
        if (way == 0) {
            sendfile_all(sock, fd, at, n);
        } else if (way == 1 || way == 2) {
            for (size_t q = 0; q < n; q += PIECE) {
                size_t m = n - q < PIECE ? n - q : PIECE;
                read_exact(fd, buf, m, at + (off_t)q);
                if (way == 2)
                    send_all(sock, buf, m);
            }
            if (way == 1)
                sendfile_all(sock, fd, at, n);
        } else {
            read_exact(fd, buf, n, at);
            send_all(sock, buf, n);
        }
    }
    close(sock);
    free(buf);
}

static void run_receiver(int listener, off_t size) {
    int sock = accept(listener, NULL, NULL);
    if (sock < 0)
        die("accept");
    uint8_t *buf = malloc(PARCEL);
    if (!buf)
        die("malloc");
    memset(buf, 1, PARCEL);
    off_t got = 0;
    for (;;) {
        ssize_t r = recv(sock, buf, PARCEL, 0);
        if (r < 0)
            die("recv");
        if (r == 0)
            break;
        got += r;
    }
    if (got != size) {
        fprintf(stderr, "received %lld of %lld bytes\n", (long long)got, (long long)size);
        exit(1);
    }
    close(sock);
    free(buf);
}

/* One transfer; *sender and *receiver get each process's CPU seconds. */
static void transfer(int way, int fd, off_t size, double *sender, double *receiver) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof at;
    if (listener < 0 || bind(listener, (struct sockaddr *)&at, sizeof at) != 0 ||
        getsockname(listener, (struct sockaddr *)&at, &len) != 0 || listen(listener, 1) != 0)
        die("listen");
    pid_t receiver_pid = fork();
    if (receiver_pid == 0) {
        run_receiver(listener, size);
        _exit(0);
    }
    close(listener);
    pid_t sender_pid = fork();
    if (sender_pid == 0) {
        run_sender(way, fd, size, &at);
        _exit(0);
    }
    struct rusage usage;
    int status;
    if (wait4(sender_pid, &status, 0, &usage) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        die("sender");
    *sender = cpu_seconds(&usage);
    if (wait4(receiver_pid, &status, 0, &usage) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        die("receiver");
    *receiver = cpu_seconds(&usage);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s FILE [RUNS]\n", argv[0]);
        return 2;
    }
    int runs = argc == 3 ? atoi(argv[2]) : 5;
    if (runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "RUNS must be 1..%d\n", MAX_RUNS);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die(argv[1]);
    double gb = (double)st.st_size / 1e9;
    double send_cpu[WAYS][MAX_RUNS], recv_cpu[WAYS][MAX_RUNS], both[WAYS][MAX_RUNS];
    for (int r = 0; r < runs; r++)
        for (int w = 0; w < WAYS; w++) {
            transfer(w, fd, st.st_size, &send_cpu[w][r], &recv_cpu[w][r]);
            both[w][r] = send_cpu[w][r] + recv_cpu[w][r];
        }
    printf("%s: %.1f MB over loopback TCP, medians of %d runs, CPU-s/GB\n", argv[1], gb * 1e3, runs);
    printf("%-15s %8s %9s %7s\n", "way", "sender", "receiver", "both");
    for (int w = 0; w < WAYS; w++)
        printf("%-15s %8.3f %9.3f %7.3f\n", way_names[w], median(send_cpu[w], runs) / gb,
               median(recv_cpu[w], runs) / gb, median(both[w], runs) / gb);
    close(fd);
    return 0;
}
