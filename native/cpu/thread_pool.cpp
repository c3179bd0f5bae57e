#include "thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace adamp {
namespace cpu {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : (int)n;
}

namespace {

// How long an idle thread spins before it blocks (see the header).
constexpr int64_t kSpinNs = 50000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

/** Spins until done() or kSpinNs have passed; true if done() came true. */
template <class F>
bool spin_until(F done) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count() > kSpinNs)
      return done();
  }
}

}  // namespace

namespace {
thread_local int t_slot = 0;  // ThreadPool::slot(): set once by each helper
}  // namespace

int ThreadPool::slot() { return t_slot; }

void ThreadPool::reserve(int threads) {
  if (threads > kMaxOwners) threads = kMaxOwners;
  std::lock_guard<std::mutex> lock(mu_);
  grow(threads - 1);
}

ThreadPool& ThreadPool::shared() {
  // note: deliberately leaked. Joining threads from a static destructor at process exit races
  // with Node tearing down; idle workers parked on a condition variable cost nothing.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::grow(int workers) {
  while ((int)workers_.size() < workers) {
    const int index = (int)workers_.size();
    workers_.emplace_back([this, index] { worker_main(index); });
  }
}

void ThreadPool::drain(int who) {
  // A task that throws must not end the process on a helper thread: the first exception is kept,
  // the remaining tasks still run (each writes only its own outputs), and run() rethrows it on the
  // caller's thread. (The core's steps allocate nothing in their tasks, step.cpp "Memory"; this
  // is the net for any other caller.)
  const std::function<void(int64_t)> fn = [this](int64_t t) {
    try {
      (*fn_)(t);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu_);
      if (!error_) error_ = std::current_exception();
    }
  };
  if (owners_ == 0) {
    const int64_t tasks = tasks_;
    for (;;) {
      const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= tasks) break;
      fn(t);
    }
    return;
  }
  // Own tasks first, from the front; then every other owner's, starting with the next owner, from
  // the back (what that owner would have reached last).
  for (int k = 0; k < owners_; ++k) {
    Cursor& c = cursors_[(who + k) % owners_];
    int64_t t;
    while (c.take(k > 0, t)) fn(t);
  }
}

void ThreadPool::worker_main(int index) {
  t_slot = index + 1;
  uint64_t seen = 0;
  for (;;) {
    // Spin first: the next run of a step usually comes within microseconds.
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
      if (stop_) return;
    }
    int active;
    {
      // The run's fields were written with mu_ held before generation_ moved: read them under it.
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      seen = generation_.load(std::memory_order_relaxed);
      active = active_workers_;
    }
    if (index >= active) continue;
    drain(index + 1);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_one();
    }
  }
}

void ThreadPool::run(int threads, int64_t tasks, const std::function<void(int64_t)>& fn) { run_impl(threads, tasks, nullptr, fn); }

void ThreadPool::run_owned(int threads, const int64_t* starts, const std::function<void(int64_t)>& fn) {
  if (threads > kMaxOwners) threads = kMaxOwners;  // callers clamp far below this
  for (int w = 0; w < threads; ++w)
    if (starts[w + 1] - starts[w] > (int64_t)UINT32_MAX) return run_impl(threads, starts[threads], nullptr, fn);  // beyond a cursor's range
  run_impl(threads, starts[threads], starts, fn);
}

bool ThreadPool::Cursor::take(bool from_back, int64_t& task) {
  uint64_t r = range.load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t front = (uint32_t)r, back = (uint32_t)(r >> 32);
    if (front >= back) return false;
    const uint64_t next = from_back ? (uint64_t)(back - 1) << 32 | front : (uint64_t)back << 32 | (front + 1);
    if (range.compare_exchange_weak(r, next, std::memory_order_relaxed)) {
      task = base + (from_back ? back - 1 : front);
      return true;
    }
  }
}

void ThreadPool::run_impl(int threads, int64_t tasks, const int64_t* starts, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  int helpers = threads - 1;
  if (starts == nullptr && helpers > tasks - 1) helpers = (int)(tasks - 1);
  std::unique_lock<std::mutex> run_lock(run_mu_, std::defer_lock);
  if (helpers <= 0 || !run_lock.try_lock()) {
    // Alone: results do not depend on the thread count, so a busy pool only costs speed.
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    grow(helpers);
    fn_ = &fn;
    tasks_ = tasks;
    next_.store(0, std::memory_order_relaxed);
    owners_ = starts == nullptr ? 0 : threads;
    for (int w = 0; w < owners_; ++w) {
      cursors_[w].base = starts[w];
      cursors_[w].range.store((uint64_t)(starts[w + 1] - starts[w]) << 32, std::memory_order_relaxed);
    }
    active_workers_ = helpers;
    pending_.store(helpers, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  drain(0);
  if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = nullptr;
    std::lock_guard<std::mutex> elock(error_mu_);
    std::swap(error, error_);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace cpu
}  // namespace adamp
