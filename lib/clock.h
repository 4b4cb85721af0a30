/* clock: the clocks of the service, its tests and benchmarks: one function
 * per clock and unit, so that a reader sees at each call which clock a time
 * comes from.
 *
 * - Monotonic (CLOCK_MONOTONIC; clock_mono_ms, clock_mono_ns): durations,
 *   deadlines, timeouts, retry and backoff waits. It never jumps when the
 *   wall clock is set, so a deadline computed from it holds. A condition
 *   variable that waits for such a deadline is set to CLOCK_MONOTONIC too
 *   (pthread_condattr_setclock).
 * - Coarse monotonic (CLOCK_MONOTONIC_COARSE; clock_mono_coarse_ms): the
 *   same clock read at tick resolution (a few ms) without the cost of a
 *   precise read, for checks on every connection or request (the accept
 *   limit, the client certificate cache, the CRL check interval). It may lag
 *   clock_mono_ms by up to a tick: compare its values with each other only.
 * - Realtime (CLOCK_REALTIME; clock_real_ms, clock_real_ns): wall-clock
 *   timestamps that leave the process: stored in the database, shown in
 *   metrics, written in log lines. Never for measuring a duration.
 * - Process CPU time (CLOCK_PROCESS_CPUTIME_ID; clock_cpu_ns): the CPU the
 *   whole process used, for benchmarks (bench/planbench.c), not wall time.
 *
 * All values are int64_t since the clock's epoch; none of these fail on
 * Linux for these clock ids, so they return the time itself. No CLOCK_
 * macros here: POSIX keeps that prefix for <time.h>. */
#pragma once
#include <stdint.h>
#include <time.h>

static inline int64_t clock_ns_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t clock_ms_of(clockid_t id)
{
	return clock_ns_of(id) / 1000000;
}

static inline int64_t clock_mono_ns(void)
{
	return clock_ns_of(CLOCK_MONOTONIC);
}

static inline int64_t clock_mono_ms(void)
{
	return clock_ms_of(CLOCK_MONOTONIC);
}

static inline int64_t clock_mono_coarse_ms(void)
{
	return clock_ms_of(CLOCK_MONOTONIC_COARSE);
}

static inline int64_t clock_real_ns(void)
{
	return clock_ns_of(CLOCK_REALTIME);
}

static inline int64_t clock_real_ms(void)
{
	return clock_ms_of(CLOCK_REALTIME);
}

static inline int64_t clock_cpu_ns(void)
{
	return clock_ns_of(CLOCK_PROCESS_CPUTIME_ID);
}

/* ns (a clock's time in nanoseconds, from 0 up) as a struct timespec: an
 * absolute time for pthread_cond_timedwait, seconds for gmtime_r. */
static inline struct timespec clock_timespec(int64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};

	return ts;
}
