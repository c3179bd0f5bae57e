// A piece of work on the libuv pool that settles a promise, safe against the environment going
// away at any moment (a worker terminated, process.exit() with the work in flight). The ordering
// protocol is written once here; its users are the CPU's stepAsync (addon.cc StepTask) and CUDA's
// cudaWhenDone (native/cuda/napi_exports.cc WhenDoneTask).
//
// The protocol:
// - nothing throws after the work is queued: Complete runs on the JS thread, also during teardown,
//   where an exception escaping it would abort the process;
// - Complete settles the promise only while JavaScript can run. Otherwise (napi_pending_exception,
//   or napi_cannot_run_js on newer Node-API versions) it gives up on the promise, which nobody can
//   observe any more, and only releases what it holds;
// - an env cleanup hook (Teardown) blocks until Execute has returned, then keeps Complete away
//   from the environment, whatever the order of teardown. So the worker never touches memory the
//   environment has freed.
//
// A task T derives from AsyncTask<T> (CRTP) and provides, all throwing nothing:
//   void Run()                         worker thread, no N-API
//   napi_value Outcome(napi_env, napi_status, bool* failed)
//                                      JS thread: sets *failed and returns the error to reject
//                                      with (nullptr when N-API cannot make one: then nothing is settled)
//   void ReleaseOwn(napi_env)          JS thread, environment alive: release T's own N-API handles
//   void Abandon()                     the environment is gone: free what is not N-API's
#ifndef ADAMP_BINDING_ASYNC_TASK_H
#define ADAMP_BINDING_ASYNC_TASK_H

#include <node_api.h>

#include <condition_variable>
#include <mutex>

namespace adamp {

template <class T>
class AsyncTask {
 protected:
  /**
   * Makes the promise and queues t's work under `name`. On napi_ok, t belongs to the work
   * (Complete deletes it) and *promise is set. Otherwise nothing runs, what was made is released
   * (the promise is never settled: it is not returned) and t is still the caller's.
   */
  static napi_status Queue(napi_env env, T* t, const char* name, napi_value* promise) {
    napi_status s = napi_create_promise(env, &t->deferred_, promise);
    napi_value n = nullptr;
    if (s == napi_ok) s = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &n);
    if (s == napi_ok) s = napi_create_async_work(env, nullptr, n, Execute, Complete, t, &t->work_);
    if (s == napi_ok) s = napi_add_env_cleanup_hook(env, Teardown, t);
    if (s == napi_ok) {
      t->hook_ = true;
      s = napi_queue_async_work(env, t->work_);
    }
    if (s != napi_ok) {
      if (t->hook_) napi_remove_env_cleanup_hook(env, Teardown, t);
      t->hook_ = false;
      t->Release(env);
    }
    return s;
  }

  /** Releases T's handles and the work item (JS thread, environment alive). */
  void Release(napi_env env) {
    static_cast<T*>(this)->ReleaseOwn(env);
    if (work_ != nullptr) napi_delete_async_work(env, work_);
    work_ = nullptr;
  }

  /** An Error with `code` (a string), or nullptr when N-API cannot make one. */
  static napi_value MakeError(napi_env env, const char* message, const char* code) {
    napi_value msg, c, err;
    if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return nullptr;
    if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok) return nullptr;
    if (napi_create_error(env, c, msg, &err) != napi_ok) return nullptr;
    return err;
  }

  /** Whether Execute has returned (the worker is done with the task's memory). */
  bool ran() {
    std::lock_guard<std::mutex> lock(mu_);
    return ran_;
  }

 private:
  /** Worker thread: no N-API here. */
  static void Execute(napi_env, void* data) {
    T* t = static_cast<T*>(data);
    t->Run();
    std::lock_guard<std::mutex> lock(t->mu_);
    t->ran_ = true;
    t->cv_.notify_all();
  }

  /** JS thread, also during teardown. Throws nothing. */
  static void Complete(napi_env env, napi_status status, void* data) {
    T* t = static_cast<T*>(data);
    if (t->hook_) napi_remove_env_cleanup_hook(env, Teardown, t);
    t->hook_ = false;
    if (!t->env_gone_) {
      t->Settle(env, status);
      t->Release(env);
    } else {
      // The environment's own teardown reclaims the N-API handles and the work item; touching
      // them now could reach freed memory.
      t->Abandon();
    }
    delete t;
  }

  /** Env cleanup hook (JS thread, the environment is going away): wait for Execute, then stay away from the environment. */
  static void Teardown(void* data) {
    T* t = static_cast<T*>(data);
    {
      std::unique_lock<std::mutex> lock(t->mu_);
      t->cv_.wait(lock, [t] { return t->ran_; });
    }
    t->hook_ = false;
    // Node completes queued work before it runs cleanup hooks, so Complete normally ran already
    // and this hook was removed; if it has not, it must not call into the environment any more.
    t->env_gone_ = true;
  }

  /** Resolves or rejects the promise; stops quietly at the first N-API call that fails (JavaScript cannot run). */
  void Settle(napi_env env, napi_status status) {
    if (deferred_ == nullptr) return;
    bool failed = false;
    napi_value err = static_cast<T*>(this)->Outcome(env, status, &failed);
    napi_status s;
    if (failed) {
      if (err == nullptr) return;  // could not even build the error: JavaScript cannot run
      s = napi_reject_deferred(env, deferred_, err);
    } else {
      if (status != napi_ok) return;
      napi_value undefined;
      if (napi_get_undefined(env, &undefined) != napi_ok) return;
      s = napi_resolve_deferred(env, deferred_, undefined);
    }
    if (s == napi_ok) deferred_ = nullptr;  // settled (a failed settle is left to the environment's teardown)
  }

  napi_deferred deferred_ = nullptr;
  napi_async_work work_ = nullptr;
  bool hook_ = false;      // JS thread only
  bool env_gone_ = false;  // JS thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool ran_ = false;  // under mu_
};

}  // namespace adamp

#endif  // ADAMP_BINDING_ASYNC_TASK_H
