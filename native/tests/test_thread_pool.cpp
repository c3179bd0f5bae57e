// The CPU core's thread pool (native/cpu/thread_pool.h): every task of a run runs exactly once,
// for plain runs and for runs with an owner per task (run_owned), whatever the thread count and
// however the tasks are split among owners (empty ranges, everything on one owner, more owners
// than tasks), run_owned's owners run their own tasks first, and thieves take from the back.
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "check.h"
#include "thread_pool.h"

using adamp::cpu::ThreadPool;

namespace {

/** Runs `tasks` tasks split at `starts` (null: a plain run); checks each ran once. */
void check_once(ThreadPool& pool, int threads, int64_t tasks, const std::vector<int64_t>* starts) {
  std::vector<std::atomic<int>> hits((size_t)tasks);
  for (auto& h : hits) h.store(0);
  auto fn = [&](int64_t t) { hits[(size_t)t].fetch_add(1); };
  if (starts == nullptr)
    pool.run(threads, tasks, fn);
  else
    pool.run_owned(threads, starts->data(), fn);
  int bad = 0;
  for (auto& h : hits) bad += h.load() != 1;
  CHECK(bad == 0);
}

}  // namespace

int main() {
  ThreadPool& pool = ThreadPool::shared();
  for (int threads = 1; threads <= 4; ++threads) {
    for (int64_t tasks : {0, 1, 2, 3, 7, 64, 1000}) {
      check_once(pool, threads, tasks, nullptr);
      // Even blocks, everything on the last owner, everything on the first, one task each where possible.
      std::vector<int64_t> even(threads + 1), last(threads + 1, 0), first(threads + 1, tasks), one(threads + 1);
      for (int w = 0; w <= threads; ++w) {
        even[w] = tasks * w / threads;
        one[w] = w < threads ? std::min<int64_t>(w, tasks) : tasks;
      }
      last[threads] = tasks;
      first[0] = 0;
      for (const auto* s : {&even, &last, &first, &one}) check_once(pool, threads, tasks, s);
    }
  }
  // Owners run their own tasks first: the caller (owner 0) takes none of owner 1's tasks before
  // its own range is exhausted (the helper may have taken some of the caller's by then).
  {
    const int64_t starts[3] = {0, 50, 100};
    std::vector<int> by(100, -1);
    std::vector<std::thread::id> who(100);
    std::atomic<int> order{0};
    pool.run_owned(2, starts, [&](int64_t t) {
      by[(size_t)t] = order.fetch_add(1);
      who[(size_t)t] = std::this_thread::get_id();
    });
    const std::thread::id caller = std::this_thread::get_id();
    int first_foreign = 1 << 30, last_own = -1;
    for (int t = 0; t < 100; ++t) {
      if (who[(size_t)t] != caller) continue;
      if (t < 50) last_own = std::max(last_own, by[(size_t)t]);
      else first_foreign = std::min(first_foreign, by[(size_t)t]);
    }
    CHECK(last_own < first_foreign);  // the caller ran none of owner 1's tasks before all of its own
  }
  // A thread that has run out takes other owners' tasks from the back, and the owner from the
  // front: with every task on owner 1, the caller (a thief from its first task on) runs a suffix of
  // them, last first, and the helper the prefix before it. (If the helper never joins, the caller
  // runs all of them: still a suffix.)
  for (int rep = 0; rep < 20; ++rep) {
    const int64_t starts[3] = {0, 0, 200};
    std::vector<int> by(200, -1);
    std::vector<std::thread::id> who(200);
    std::atomic<int> order{0};
    pool.run_owned(2, starts, [&](int64_t t) {
      by[(size_t)t] = order.fetch_add(1);
      who[(size_t)t] = std::this_thread::get_id();
      for (volatile int spin = 0; spin < 2000; ++spin) {
      }
    });
    const std::thread::id caller = std::this_thread::get_id();
    int64_t first_stolen = 200;
    for (int64_t t = 0; t < 200; ++t)
      if (who[(size_t)t] == caller) first_stolen = std::min(first_stolen, t);
    bool suffix = true, descending = true;
    for (int64_t t = first_stolen; t < 200; ++t) {
      suffix = suffix && who[(size_t)t] == caller;
      if (t > first_stolen) descending = descending && by[(size_t)t] < by[(size_t)t - 1];
    }
    CHECK(suffix);
    CHECK(descending || first_stolen == 0);  // alone (no helper), the caller runs them in order
  }
  // A task that throws, on whichever thread: the process goes on, every other task still runs
  // once, and run() / run_owned() rethrow on the caller's thread.
  for (int threads = 1; threads <= 3; ++threads) {
    for (int owned = 0; owned < 2; ++owned) {
      std::vector<std::atomic<int>> hits(64);
      for (auto& h : hits) h.store(0);
      auto fn = [&](int64_t t) {
        hits[(size_t)t].fetch_add(1);
        if (t % 16 == 15) throw std::runtime_error("task failed");
      };
      const int64_t starts[4] = {0, 64 / threads, threads > 1 ? 2 * 64 / threads : 64, 64};
      std::vector<int64_t> st(starts, starts + threads);
      st.push_back(64);
      bool thrown = false;
      try {
        if (owned)
          pool.run_owned(threads, st.data(), fn);
        else
          pool.run(threads, 64, fn);
      } catch (const std::runtime_error&) {
        thrown = true;
      }
      CHECK(thrown);
      int bad = 0;
      for (auto& h : hits) bad += h.load() != 1;
      CHECK(bad == 0 || threads == 1);  // alone, the caller's own loop stops at the first throw
    }
  }
  // The pool is still usable after a failed run.
  check_once(pool, 2, 100, nullptr);
  return report("thread_pool");
}
