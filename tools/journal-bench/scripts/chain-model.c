// chain-model: what a durable first write with copy-on-write costs on this machine's disk when nothing but the
// system calls is spent on it. It is the store's default write path reduced to its I/O, written in C with one
// thread per writer, so that journal-bench's figures can be set beside the best any implementation of the same
// rules could do (docs/benchmarks.md, "The chain in C").
//
// Each of W writers takes distinct chunks of the origin in a shuffled order and, for each:
//   1. reads the old chunk (4 KiB pread, page cache dropped beforehand: the disk serves it);
//   2. writes it to the next free chunk of each of S COW files (buffered pwrite);
//   3. queues it for a commit round and waits until the round is durable (mode-dependent, below);
//   4. writes the new data over the origin chunk (buffered pwrite).
// A closing fdatasync of the origin ends the timed part.
//
// Commit rounds run on two threads, pipelined like the store's: stage 1 takes every queued copy and makes the COW
// data durable; stage 2 writes a log record (one 4 KiB page, plus the copies in mode 1) and flushes the log. Round N+1's
// stage 1 may run while round N is in stage 2; rounds complete in order. A writer is woken alone when its round is
// durable (one condition variable per writer).
//
// Modes:
//   0  the store's rules: stage 1 starts write-back of every COW file, then fdatasyncs each; stage 2 flushes the log.
//      Two device flushes in sequence before a write may overwrite its origin chunk.
//   1  the copies carried in the log: stage 1 does nothing; stage 2 writes the round's copies with the record and
//      flushes the log once (data journaling; the COW files would be written home later).
//   2  a round with no flush at all (not durable): the hand-offs and waits alone.
//   3  no round: read, copy, write. The floor of any copy-on-write first write.
//   4  one flush: stage 1 writes the COW data back and waits for it (sync_file_range), stage 2 flushes the log.
//
// Usage: chain-model DIR COUNT WRITERS ORIGIN_MIB MODE SNAPSHOTS
// DIR holds origin.img (ORIGIN_MIB of data), cow0.img .. cowS-1.img and log.img (zero-filled, large enough).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { CHUNK = 4096, MAX_WRITERS = 256, MAX_SNAPSHOTS = 64, LOG_BUFFER = 4 << 20 };
static const long LOG_BYTES = 64L << 20;

static int origin, log_fd, cows[MAX_SNAPSHOTS], snapshots = 1, writers, mode;
static long chunks, count;
static uint32_t *order;
static double *latency;
static atomic_long next_write, next_cow_chunk;
static atomic_long ns_read, ns_wait, ns_stage1, ns_stage2;

// mu guards every counter below it and each writer's ticket; the writers' condition variables and the two stages'
// use it. Nothing else is locked, so there is no order to keep.
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stage1_cv = PTHREAD_COND_INITIALIZER, stage2_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t writer_cv[MAX_WRITERS];
static long ticket_of[MAX_WRITERS]; // the ticket a writer waits for, 0 when it is not waiting
static long queued, stage1_done, durable, rounds, flushes;
static int stopping;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static void add_ns(atomic_long *to, double since) { atomic_fetch_add(to, (long)((now() - since) * 1e9)); }

static void *stage1(void *unused) {
  long taken = 0;
  pthread_mutex_lock(&mu);
  for (;;) {
    while (queued == taken && !stopping) pthread_cond_wait(&stage1_cv, &mu); // wait: copies to commit, or the end
    if (queued == taken) break;
    long upto = queued;
    pthread_mutex_unlock(&mu);
    double t = now();
    if (mode == 0 || mode == 4)
      for (int f = 0; f < snapshots; f++) sync_file_range(cows[f], 0, 0, SYNC_FILE_RANGE_WRITE);
    if (mode == 0)
      for (int f = 0; f < snapshots; f++) fdatasync(cows[f]);
    if (mode == 4)
      for (int f = 0; f < snapshots; f++)
        sync_file_range(cows[f], 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    add_ns(&ns_stage1, t);
    pthread_mutex_lock(&mu);
    if (mode == 0) flushes += snapshots;
    taken = stage1_done = upto;
    rounds++;
    pthread_cond_signal(&stage2_cv);
  }
  pthread_mutex_unlock(&mu);
  return 0;
}

static void *stage2(void *unused) {
  char *record = aligned_alloc(4096, LOG_BUFFER);
  memset(record, 7, LOG_BUFFER);
  long done = 0, offset = 0;
  pthread_mutex_lock(&mu);
  for (;;) {
    while (stage1_done == done && !stopping) pthread_cond_wait(&stage2_cv, &mu); // wait: a round past stage 1
    if (stage1_done == done) break;
    long upto = stage1_done;
    pthread_mutex_unlock(&mu);
    long bytes = CHUNK + (mode == 1 ? (upto - done) * CHUNK * snapshots : 0);
    if (bytes > LOG_BUFFER) bytes = LOG_BUFFER;
    if (offset + bytes > LOG_BYTES) offset = 0;
    double t = now();
    pwrite(log_fd, record, bytes, offset);
    offset += bytes;
    int flush = mode == 0 || mode == 1 || mode == 4;
    if (flush) fdatasync(log_fd);
    add_ns(&ns_stage2, t);
    pthread_mutex_lock(&mu);
    if (flush) flushes++;
    durable = done = upto;
    for (int w = 0; w < writers; w++)
      if (ticket_of[w] && ticket_of[w] <= upto) {
        ticket_of[w] = 0;
        pthread_cond_signal(&writer_cv[w]);
      }
  }
  pthread_mutex_unlock(&mu);
  return 0;
}

static void *writer(void *arg) {
  int me = (int)(long)arg;
  char *old = aligned_alloc(4096, CHUNK), *data = aligned_alloc(4096, CHUNK);
  memset(data, 9, CHUNK);
  for (;;) {
    long i = atomic_fetch_add(&next_write, 1);
    if (i >= count) break;
    double start = now();
    off_t at = (off_t)order[i] * CHUNK;
    pread(origin, old, CHUNK, at);
    add_ns(&ns_read, start);
    off_t to = (atomic_fetch_add(&next_cow_chunk, 1) + 1) * CHUNK; // chunk 0 is the COW file's header
    for (int f = 0; f < snapshots; f++) pwrite(cows[f], old, CHUNK, to);
    if (mode != 3) {
      double t = now();
      pthread_mutex_lock(&mu);
      long ticket = ++queued;
      pthread_cond_signal(&stage1_cv);
      ticket_of[me] = ticket;
      while (durable < ticket) pthread_cond_wait(&writer_cv[me], &mu); // wait: this copy's round is durable
      ticket_of[me] = 0;
      pthread_mutex_unlock(&mu);
      add_ns(&ns_wait, t);
    }
    pwrite(origin, data, CHUNK, at);
    latency[i] = now() - start;
  }
  return 0;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int open_or_die(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDWR);
  if (fd < 0) {
    perror(path);
    exit(1);
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: chain-model DIR COUNT WRITERS ORIGIN_MIB MODE SNAPSHOTS\n");
    return 64;
  }
  const char *dir = argv[1];
  count = atol(argv[2]);
  writers = atoi(argv[3]);
  chunks = atol(argv[4]) * 1024 * 1024 / CHUNK;
  mode = atoi(argv[5]);
  snapshots = atoi(argv[6]);
  if (writers < 1 || writers > MAX_WRITERS || snapshots < 1 || snapshots > MAX_SNAPSHOTS || mode < 0 || mode > 4 ||
      count < 1 || chunks < 1) {
    fprintf(stderr, "chain-model: writers 1..%d, snapshots 1..%d, mode 0..4, count and size positive\n", MAX_WRITERS,
            MAX_SNAPSHOTS);
    return 64;
  }
  if (count > chunks) count = chunks;
  origin = open_or_die(dir, "origin.img");
  log_fd = open_or_die(dir, "log.img");
  for (int f = 0; f < snapshots; f++) {
    char name[32];
    snprintf(name, sizeof name, "cow%d.img", f);
    cows[f] = open_or_die(dir, name);
  }
  order = malloc(chunks * sizeof *order);
  for (long i = 0; i < chunks; i++) order[i] = (uint32_t)i;
  srand(42);
  for (long i = chunks - 1; i > 0; i--) {
    long j = rand() % (i + 1);
    uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  latency = calloc(count, sizeof *latency);

  pthread_t s1, s2, w[MAX_WRITERS];
  pthread_create(&s1, 0, stage1, 0);
  pthread_create(&s2, 0, stage2, 0);
  double start = now();
  for (int i = 0; i < writers; i++) {
    pthread_cond_init(&writer_cv[i], 0);
    pthread_create(&w[i], 0, writer, (void *)(long)i);
  }
  for (int i = 0; i < writers; i++) pthread_join(w[i], 0);
  fdatasync(origin);
  double elapsed = now() - start;
  pthread_mutex_lock(&mu);
  stopping = 1;
  pthread_cond_broadcast(&stage1_cv);
  pthread_cond_broadcast(&stage2_cv);
  pthread_mutex_unlock(&mu);
  pthread_join(s1, 0);
  pthread_join(s2, 0);

  qsort(latency, count, sizeof *latency, by_value);
  printf("mode %d, %d snapshot(s), %d writers: %ld writes in %.3f s, %.0f writes/s; p50 %.0f us, p99 %.0f us; "
         "%ld rounds (%.1f writes a round), %.2f flushes a write\n",
         mode, snapshots, writers, count, elapsed, count / elapsed, latency[count / 2] * 1e6,
         latency[count * 99 / 100] * 1e6, rounds, rounds ? (double)count / rounds : 0.0, (double)flushes / count);
  printf("  per write: read %.0f us, round wait %.0f us; per round: stage 1 %.0f us, stage 2 %.0f us\n",
         ns_read / 1e3 / count, ns_wait / 1e3 / count, rounds ? ns_stage1 / 1e3 / rounds : 0.0,
         rounds ? ns_stage2 / 1e3 / rounds : 0.0);
  return 0;
}
