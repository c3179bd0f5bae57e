// A persistent pool of worker threads for the CPU core.
//
// run(threads, tasks, fn) calls fn(t) once for every task t in [0, tasks) on up to `threads`
// threads (the caller is one of them) and returns when all are done. Which thread runs which
// task is not fixed; the core makes every result independent of that (each task writes only its
// own outputs, and partials are combined in task order afterwards).
//
// A step makes dozens of runs a few hundred microseconds apart (pass 1 and pass 2 of every wave).
// Between runs an idle worker spins for a while (kSpinNs, pause instructions) on the generation
// counter before it parks on the condition variable, and the caller spins the same way for its
// helpers to finish: a parked thread's futex wake-up costs tens of microseconds, and on a loaded
// machine the woken thread may wait a whole scheduler slice for a core, so without the spin the
// caller ran most of every run alone and the second thread bought little.
#ifndef ADAMP_CPU_THREAD_POOL_H
#define ADAMP_CPU_THREAD_POOL_H

#include <stdint.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace adamp {
namespace cpu {

class ThreadPool {
 public:
  ThreadPool() = default;
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /**
   * Runs every task. One run at a time: a concurrent caller runs its tasks alone. If a task throws,
   * the others still run and run() rethrows the first exception on the caller's thread (never on
   * a helper, where it would end the process).
   */
  void run(int threads, int64_t tasks, const std::function<void(int64_t)>& fn);

  /**
   * run() with an owner per task: tasks [starts[w], starts[w + 1]) belong to thread w (the caller
   * is thread 0; `starts` has threads + 1 entries, starts[0] == 0, starts[threads] == tasks). Each
   * thread runs its own tasks first, in order from the front, then helps with the others', taking
   * them from the back. So work that two runs give to the same owner stays on one core and finds
   * its data in that core's caches (a pass 2 on the other core would fetch every line pass 1
   * dirtied from its cache), and a thief takes the tasks their owner would have reached last (a
   * step puts its cached work first and fresh work last). Results never depend on who runs what,
   * only speed does.
   */
  void run_owned(int threads, const int64_t* starts, const std::function<void(int64_t)>& fn);

  /** The process-wide pool. */
  static ThreadPool& shared();

  /**
   * Starts the helper threads a run with `threads` threads uses, now (run() starts them when it
   * first needs them). A step calls it before its first kernel, so that a thread that cannot start
   * (std::system_error, std::bad_alloc) fails the step before it has changed anything.
   */
  void reserve(int threads);

  /**
   * The calling thread's slot in a run: 0 on the thread that called run() (every thread that is
   * not one of this pool's helpers), 1 + i on helper i. A run with `threads` threads runs its
   * tasks on slots [0, threads), so per-thread buffers can be made before the run, by slot.
   */
  static int slot();

  /** The most owners of run_owned (more threads are clamped to it). */
  static constexpr int kMaxOwners = 64;

 private:
  void worker_main(int index);
  void grow(int workers);  // with mu_ held
  void drain(int who);
  void run_impl(int threads, int64_t tasks, const int64_t* starts, const std::function<void(int64_t)>& fn);

  std::mutex run_mu_;  // one run at a time
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};  // written with mu_ held; read by spinning workers without it
  int active_workers_ = 0;               // workers taking part in the current run
  std::atomic<int> pending_{0};          // workers of the current run not finished yet
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::mutex error_mu_;
  std::exception_ptr error_;  // the first exception a task of the current run threw
  // run_owned: per-owner cursors, each on its own cache line; owners_ == 0 in a plain run. The
  // tasks not yet taken are base + [front, back), both packed into one word (back << 32 | front)
  // so that the owner (front) and thieves (back) take each task exactly once.
  struct alignas(64) Cursor {
    std::atomic<uint64_t> range{0};
    int64_t base = 0;
    bool take(bool from_back, int64_t& task);
  };
  int owners_ = 0;
  Cursor cursors_[kMaxOwners];
};

/** std::thread::hardware_concurrency(), at least 1. */
int hardware_threads();

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_THREAD_POOL_H
