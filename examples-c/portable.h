/*
 * portable.h: the little cancel.c and the C tests need beyond C99 (threads, a lock, a
 * condition variable, sleeping, a monotonic clock), on POSIX (pthreads) and on Windows
 * (Win32 threads, for MSVC and MinGW alike: no winpthreads).
 *
 * Copy it with the example you start from. libylokh itself needs none of this: it is only
 * how these programs make a second thread to show cancellation and sharing a client.
 * On POSIX, define _POSIX_C_SOURCE 200809L before including it and link with -pthread.
 */
#ifndef YLOKH_EXAMPLE_PORTABLE_H
#define YLOKH_EXAMPLE_PORTABLE_H

#include <stdlib.h>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <errno.h>
#include <pthread.h>
#include <time.h>
#endif

/* A thread runs `fn(arg)`; port_thread_join waits for it. */
typedef void (*port_thread_fn)(void *arg);

#ifdef _WIN32

typedef HANDLE port_thread;
typedef DWORD port_thread_id;
typedef CRITICAL_SECTION port_mutex;
typedef CONDITION_VARIABLE port_cond;

typedef struct {
    port_thread_fn fn;
    void *arg;
} port_thread_start_;

static inline DWORD WINAPI port_thread_main_(LPVOID p) {
    port_thread_start_ start = *(port_thread_start_ *)p;
    free(p);
    start.fn(start.arg);
    return 0;
}

/* Returns 0 on success. */
static inline int port_thread_create(port_thread *t, port_thread_fn fn, void *arg) {
    port_thread_start_ *start = malloc(sizeof *start);
    if (start == NULL) return -1;
    start->fn = fn;
    start->arg = arg;
    *t = CreateThread(NULL, 0, port_thread_main_, start, 0, NULL);
    if (*t == NULL) {
        free(start);
        return -1;
    }
    return 0;
}

static inline void port_thread_join(port_thread t) {
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}

static inline port_thread_id port_thread_self(void) { return GetCurrentThreadId(); }
static inline int port_thread_same(port_thread_id a, port_thread_id b) { return a == b; }

static inline void port_mutex_init(port_mutex *m) { InitializeCriticalSection(m); }
static inline void port_mutex_destroy(port_mutex *m) { DeleteCriticalSection(m); }
static inline void port_mutex_lock(port_mutex *m) { EnterCriticalSection(m); }
static inline void port_mutex_unlock(port_mutex *m) { LeaveCriticalSection(m); }

static inline void port_cond_init(port_cond *c) { InitializeConditionVariable(c); }
static inline void port_cond_destroy(port_cond *c) { (void)c; /* nothing to free */ }
static inline void port_cond_broadcast(port_cond *c) { WakeAllConditionVariable(c); }
static inline void port_cond_wait(port_cond *c, port_mutex *m) {
    SleepConditionVariableCS(c, m, INFINITE);
}
/* Waits at most `ms`; may return early (spuriously): callers loop on their condition. */
static inline void port_cond_wait_ms(port_cond *c, port_mutex *m, long ms) {
    SleepConditionVariableCS(c, m, ms > 0 ? (DWORD)ms : 0);
}

/* Milliseconds from an arbitrary start, never going back. */
static inline double port_now_ms(void) {
    LARGE_INTEGER freq, now;
    QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (double)now.QuadPart * 1e3 / (double)freq.QuadPart;
}

static inline void port_sleep_ms(long ms) { Sleep(ms > 0 ? (DWORD)ms : 0); }

#else /* POSIX */

typedef pthread_t port_thread;
typedef pthread_t port_thread_id;
typedef pthread_mutex_t port_mutex;
typedef pthread_cond_t port_cond;

typedef struct {
    port_thread_fn fn;
    void *arg;
} port_thread_start_;

static inline void *port_thread_main_(void *p) {
    port_thread_start_ start = *(port_thread_start_ *)p;
    free(p);
    start.fn(start.arg);
    return NULL;
}

/* Returns 0 on success. */
static inline int port_thread_create(port_thread *t, port_thread_fn fn, void *arg) {
    port_thread_start_ *start = malloc(sizeof *start);
    if (start == NULL) return -1;
    start->fn = fn;
    start->arg = arg;
    if (pthread_create(t, NULL, port_thread_main_, start) != 0) {
        free(start);
        return -1;
    }
    return 0;
}

static inline void port_thread_join(port_thread t) { pthread_join(t, NULL); }

static inline port_thread_id port_thread_self(void) { return pthread_self(); }
static inline int port_thread_same(port_thread_id a, port_thread_id b) {
    return pthread_equal(a, b);
}

static inline void port_mutex_init(port_mutex *m) { pthread_mutex_init(m, NULL); }
static inline void port_mutex_destroy(port_mutex *m) { pthread_mutex_destroy(m); }
static inline void port_mutex_lock(port_mutex *m) { pthread_mutex_lock(m); }
static inline void port_mutex_unlock(port_mutex *m) { pthread_mutex_unlock(m); }

static inline void port_cond_init(port_cond *c) { pthread_cond_init(c, NULL); }
static inline void port_cond_destroy(port_cond *c) { pthread_cond_destroy(c); }
static inline void port_cond_broadcast(port_cond *c) { pthread_cond_broadcast(c); }
static inline void port_cond_wait(port_cond *c, port_mutex *m) { pthread_cond_wait(c, m); }
/* Waits at most `ms`; may return early (spuriously): callers loop on their condition. */
static inline void port_cond_wait_ms(port_cond *c, port_mutex *m, long ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, m, &until);
}

/* Milliseconds from an arbitrary start, never going back. */
static inline double port_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void port_sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#endif

#endif /* YLOKH_EXAMPLE_PORTABLE_H */
