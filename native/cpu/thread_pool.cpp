#include "thread_pool.h"

namespace adamp {
namespace cpu {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : (int)n;
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

void ThreadPool::drain() {
  const int64_t tasks = tasks_;
  const auto& fn = *fn_;
  for (;;) {
    const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= tasks) break;
    fn(t);
  }
}

void ThreadPool::worker_main(int index) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (index >= active_workers_) continue;
    lock.unlock();
    drain();
    lock.lock();
    if (--pending_ == 0) done_.notify_one();
  }
}

void ThreadPool::run(int threads, int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  int helpers = threads - 1;
  if (helpers > tasks - 1) helpers = (int)(tasks - 1);
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
    active_workers_ = helpers;
    pending_ = helpers;
    ++generation_;
  }
  wake_.notify_all();
  drain();
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return pending_ == 0; });
  fn_ = nullptr;
}

}  // namespace cpu
}  // namespace adamp
