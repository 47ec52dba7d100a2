// The kernel-socket ceiling of the NVMe/TCP loopback benchmark: the same bytes on the same
// sockets with no NVMe, no target and no initiator logic, both sides busy-polling their cores.
//   qd1 REPLY BUF_MIB SECS    ping-pong: a 72-byte request (a CapsuleCmd), a 24-byte header plus
//                             REPLY bytes from a random offset of a BUF_MIB transparent-huge-page
//                             buffer (a C2HData from a malloc namespace) in one writev; the
//                             "server" polls with non-blocking recv on core 0, the "client" on
//                             core 1. Prints round trips per second: what QD1 cannot exceed.
//   stream SIZE BATCH BUF_MIB SECS
//                             one-way: the sender (core 0) writev's BATCH x (24-byte header +
//                             SIZE bytes from random offsets) at a time, the receiver (core 1)
//                             reads into a 1 MiB buffer. Prints messages per second: what a
//                             target whose core is saturated by the socket's own work (large
//                             reads) cannot exceed.
// One JSON line on stdout. Built and run by scripts/bench-tcp.sh --ceiling (needs a C compiler).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <time.h>

static int srv_fd, cli_fd;
static volatile int stop;
static size_t buf_len, reply, size;
static int batch;
static char *buf;
static long received, want;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void pin(int cpu) {
  cpu_set_t c;
  CPU_ZERO(&c);
  CPU_SET(cpu, &c);
  pthread_setaffinity_np(pthread_self(), sizeof c, &c);
}

static size_t random_offset(unsigned long *x, size_t unit) {
  *x = *x * 6364136223846793005UL + 1442695040888963407UL;
  return ((*x >> 20) % (buf_len / unit)) * unit;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void *qd1_server(void *arg) {
  (void)arg;
  pin(0);
  char in[4096], hdr[24] = {0};
  unsigned long x = 1;
  size_t got = 0;
  while (!stop) {
    ssize_t n = recv(srv_fd, in, sizeof in, MSG_DONTWAIT);
    if (n <= 0) continue;
    for (got += (size_t)n; got >= 72; got -= 72) {
      struct iovec v[2] = {{hdr, 24}, {buf + random_offset(&x, 4096), reply}};
      if (writev(srv_fd, v, 2) != (ssize_t)(24 + reply)) die("writev");
    }
  }
  return NULL;
}

static void *stream_receiver(void *arg) {
  (void)arg;
  pin(1);
  char *b = malloc(1 << 20);
  while (received < want) {
    ssize_t n = recv(cli_fd, b, 1 << 20, 0);
    if (n <= 0) break;
    received += n;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) goto usage;
  int qd1 = strcmp(argv[1], "qd1") == 0;
  if (!qd1 && strcmp(argv[1], "stream") != 0) goto usage;
  if ((qd1 && argc != 5) || (!qd1 && argc != 6)) goto usage;
  double secs;
  if (qd1) {
    reply = strtoul(argv[2], NULL, 0);
    buf_len = strtoul(argv[3], NULL, 0) << 20;
    secs = atof(argv[4]);
  } else {
    size = strtoul(argv[2], NULL, 0);
    batch = atoi(argv[3]);
    buf_len = strtoul(argv[4], NULL, 0) << 20;
    secs = atof(argv[5]);
    if (batch < 1 || batch > 64) goto usage;
  }
  if (buf_len < (1 << 20) || reply > 1 << 20 || size > 1 << 20 || secs <= 0) goto usage;
  buf = mmap(NULL, buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) die("mmap");
  madvise(buf, buf_len, MADV_HUGEPAGE);
  memset(buf, 1, buf_len);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  socklen_t al = sizeof a;
  if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) die("listen");
  cli_fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(cli_fd, (void *)&a, sizeof a)) die("connect");
  srv_fd = accept(l, NULL, NULL);
  int one = 1;
  setsockopt(cli_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(srv_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  pthread_t t;
  if (qd1) {
    pthread_create(&t, NULL, qd1_server, NULL);
    pin(1);
    char q[72] = {0};
    char *b = malloc(1 << 20);
    long trips = 0;
    double t0 = now(), end = t0 + secs;
    while (now() < end) {
      if (send(cli_fd, q, 72, 0) != 72) die("send");
      for (long need = 24 + (long)reply; need > 0;) {
        ssize_t n = recv(cli_fd, b, 1 << 20, MSG_DONTWAIT);
        if (n > 0) need -= n;
      }
      trips++;
    }
    double el = now() - t0;
    stop = 1;
    pthread_join(t, NULL);
    printf("{\"mode\":\"qd1\",\"reply_bytes\":%zu,\"buffer_mib\":%zu,\"seconds\":%.3f,"
           "\"round_trips_per_s\":%.0f}\n", reply, buf_len >> 20, el, trips / el);
  } else {
    pin(0);
    // Messages sent in whole batches, the receiver stops once it has them all.
    long msgs = 0;
    char hdr[24] = {0};
    unsigned long x = 1;
    want = 1L << 62; // until the sender shuts its side down
    pthread_create(&t, NULL, stream_receiver, NULL);
    double t0 = now(), end = t0 + secs;
    while (now() < end) {
      struct iovec v[128];
      int k = 0;
      for (int j = 0; j < batch; j++) {
        v[k].iov_base = hdr;
        v[k++].iov_len = 24;
        v[k].iov_base = buf + random_offset(&x, size < 4096 ? 4096 : size);
        v[k++].iov_len = size;
      }
      int first = 0;
      for (size_t left = batch * (24 + size); left;) {
        ssize_t n = writev(srv_fd, v + first, k - first);
        if (n <= 0) die("writev");
        left -= (size_t)n;
        for (size_t m = (size_t)n; m;) {
          if (m >= v[first].iov_len) {
            m -= v[first].iov_len;
            first++;
          } else {
            v[first].iov_base = (char *)v[first].iov_base + m;
            v[first].iov_len -= m;
            m = 0;
          }
        }
      }
      msgs += batch;
    }
    double el = now() - t0;
    shutdown(srv_fd, SHUT_WR);
    pthread_join(t, NULL);
    printf("{\"mode\":\"stream\",\"size\":%zu,\"batch\":%d,\"buffer_mib\":%zu,\"seconds\":%.3f,"
           "\"messages_per_s\":%.0f}\n", size, batch, buf_len >> 20, el, msgs / el);
  }
  return 0;
usage:
  fprintf(stderr, "usage: socket-ceiling qd1 REPLY_BYTES BUF_MIB SECS | stream SIZE BATCH BUF_MIB SECS\n");
  return 2;
}
