// node-addon-api shim over the FlexBSO C engine (flexbso.h).
//
// This layer only converts types: JS values in, C calls, JS values out.
// A negative errno from the engine becomes a JS Error whose `code` is the
// errno name ("EEXIST", "ENOENT", "EBUSY", ...), whose `errno` is the negative
// number, and whose message is the engine's fb_err sentence (it names the
// parameter and the fix). Validation of options and params belongs to the TS
// layer (lib/engine/); the checks here only guard the conversions.

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "flexbso/flexbso.h"

namespace {

// ------------------------------------------------------------------ errors

/** Stable code for a negative errno: "EEXIST" etc., from libuv's table. */
std::string ErrnoCode(int rc) {
  char buf[64];
  uv_err_name_r(rc, buf, sizeof(buf));
  if (buf[0] != 'E') return "EUNKNOWN";
  return std::string(buf);
}

/** Throws a pending JS Error for an engine failure; returns undefined. */
Napi::Value ThrowEngineError(Napi::Env env, int rc, const fb_err& err, const char* call) {
  std::string msg = err.msg[0] != '\0' ? std::string(err.msg) : std::string(strerror(-rc));
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoCode(rc)));
  e.Set("errno", Napi::Number::New(env, rc));
  e.Set("syscall", Napi::String::New(env, call));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

/** Throws a TypeError with code EINVAL for a value of the wrong JS type. */
Napi::Value ThrowArgType(Napi::Env env, const char* what) {
  Napi::TypeError e = Napi::TypeError::New(env, std::string("argument ") + what + " (strings without NUL)");
  e.Set("code", Napi::String::New(env, "EINVAL"));
  e.Set("errno", Napi::Number::New(env, -EINVAL));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// A JS string argument that converts to a C string unchanged (no NUL inside).
bool IsString(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) return false;
  std::string s = info[i].As<Napi::String>();
  return s.find('\0') == std::string::npos;
}

bool IsUint(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  double d = info[i].As<Napi::Number>().DoubleValue();
  return d >= 0 && d <= 9007199254740991.0 && d == static_cast<double>(static_cast<uint64_t>(d));
}

uint64_t U64(const Napi::Value& v) {
  return static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
}

// --------------------------------------------------------------------- log

struct LogLine {
  int level;
  std::string msg;
};

// Runs on the JS thread. While Node tears the environment down, JS can no
// longer be called: the line then goes to stderr rather than being lost.
void CallLog(Napi::Env env, Napi::Function fn, std::nullptr_t*, LogLine* line) {
  bool delivered = false;
  if (env != nullptr && fn != nullptr) {
    napi_value args[2];
    napi_value result;
    if (napi_create_int32(env, line->level, &args[0]) == napi_ok &&
        napi_create_string_utf8(env, line->msg.data(), line->msg.size(), &args[1]) == napi_ok) {
      delivered = napi_call_function(env, env.Undefined(), fn, 2, args, &result) == napi_ok;
    }
    if (!delivered) {
      // Leave nothing pending on the way out.
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
  }
  if (!delivered) fprintf(stderr, "flexbso engine [%d]: %s\n", line->level, line->msg.c_str());
  delete line;
}

using LogTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, LogLine, CallLog>;

// Called by the engine from any thread (reactors included): queue and return.
void EngineLog(enum fb_log_level level, const char* msg, void* arg) {
  auto* tsfn = static_cast<LogTsfn*>(arg);
  auto* line = new LogLine{static_cast<int>(level), std::string(msg)};
  if (tsfn->NonBlockingCall(line) != napi_ok) delete line;
}

// --------------------------------------------------------------- converters

const char* IoTypeName(int t) {
  switch (t) {
    case FB_IO_READ: return "read";
    case FB_IO_WRITE: return "write";
    case FB_IO_FLUSH: return "flush";
    case FB_IO_UNMAP: return "unmap";
    case FB_IO_WRITE_ZEROES: return "write_zeroes";
    case FB_IO_ZCOPY: return "zcopy";
    default: return "unknown";
  }
}

struct ForeachCtx {
  Napi::Env env;
  Napi::Array out;
  uint32_t n;
};

Napi::Value OptString(Napi::Env env, const char* s) {
  return s != nullptr ? Napi::String::New(env, s) : env.Null();
}

Napi::Number Num(Napi::Env env, uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); }

Napi::Object StatsToJs(Napi::Env env, const struct fb_bdev_stats& s) {
  Napi::Object st = Napi::Object::New(env);
  st.Set("numReadOps", Num(env, s.num_read_ops));
  st.Set("numWriteOps", Num(env, s.num_write_ops));
  st.Set("numFlushOps", Num(env, s.num_flush_ops));
  st.Set("numUnmapOps", Num(env, s.num_unmap_ops));
  st.Set("numWriteZeroesOps", Num(env, s.num_write_zeroes_ops));
  st.Set("bytesRead", Num(env, s.bytes_read));
  st.Set("bytesWritten", Num(env, s.bytes_written));
  st.Set("bytesUnmapped", Num(env, s.bytes_unmapped));
  st.Set("readLatencyNs", Num(env, s.read_latency_ns));
  st.Set("writeLatencyNs", Num(env, s.write_latency_ns));
  st.Set("ioErrors", Num(env, s.io_errors));
  st.Set("readLatencyMaxNs", Num(env, s.read_latency_max_ns));
  st.Set("readLatencyMinNs", Num(env, s.read_latency_min_ns));
  st.Set("writeLatencyMaxNs", Num(env, s.write_latency_max_ns));
  st.Set("writeLatencyMinNs", Num(env, s.write_latency_min_ns));
  return st;
}

int BdevToJs(const struct fb_bdev_info* info, void* arg) {
  auto* ctx = static_cast<ForeachCtx*>(arg);
  Napi::Env env = ctx->env;
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, info->name));
  o.Set("module", Napi::String::New(env, info->module));
  o.Set("blockSize", Napi::Number::New(env, info->block_size));
  o.Set("numBlocks", Napi::Number::New(env, static_cast<double>(info->num_blocks)));
  o.Set("claimedBy", OptString(env, info->claimed_by));
  o.Set("claimHolder", OptString(env, info->claim_holder));
  o.Set("configJson", OptString(env, info->config_json));
  o.Set("driverJson", OptString(env, info->driver_json));
  o.Set("uuid", Napi::String::New(env, info->uuid));
  o.Set("productName", OptString(env, info->product_name));
  o.Set("physicalBlockSize", Napi::Number::New(env, info->physical_block_size));
  o.Set("optimalIoBoundary", Napi::Number::New(env, info->optimal_io_boundary));
  o.Set("splitOnOptimalIoBoundary", Napi::Boolean::New(env, info->split_on_optimal_io_boundary));
  o.Set("writeUnitSize", Napi::Number::New(env, info->write_unit_size));
  o.Set("requiredAlignment", Napi::Number::New(env, info->required_alignment));
  o.Set("maxIoBlocks", Napi::Number::New(env, info->max_io_blocks));
  Napi::Object qos = Napi::Object::New(env);
  qos.Set("rwIosPerSec", Num(env, info->qos.rw_ios_per_sec));
  qos.Set("rwMbytesPerSec", Num(env, info->qos.rw_mbytes_per_sec));
  qos.Set("rMbytesPerSec", Num(env, info->qos.r_mbytes_per_sec));
  qos.Set("wMbytesPerSec", Num(env, info->qos.w_mbytes_per_sec));
  o.Set("qos", qos);
  Napi::Object st = StatsToJs(env, info->stats);
  o.Set("stats", st);
  ctx->out.Set(ctx->n++, o);
  return 0;
}

int ReactorStatsToJs(unsigned reactor, const struct fb_bdev_stats* s, void* arg) {
  auto* ctx = static_cast<ForeachCtx*>(arg);
  Napi::Object o = Napi::Object::New(ctx->env);
  o.Set("reactor", Napi::Number::New(ctx->env, reactor));
  o.Set("stats", StatsToJs(ctx->env, *s));
  ctx->out.Set(ctx->n++, o);
  return 0;
}

int MethodToJs(const char* method, const char* module, void* arg) {
  auto* ctx = static_cast<ForeachCtx*>(arg);
  Napi::Object o = Napi::Object::New(ctx->env);
  o.Set("method", Napi::String::New(ctx->env, method));
  o.Set("module", Napi::String::New(ctx->env, module));
  ctx->out.Set(ctx->n++, o);
  return 0;
}

int NotificationToJs(const struct fb_notification* n, void* arg) {
  auto* ctx = static_cast<ForeachCtx*>(arg);
  Napi::Object o = Napi::Object::New(ctx->env);
  o.Set("id", Num(ctx->env, n->id));
  o.Set("type", Napi::String::New(ctx->env, n->type));
  o.Set("ctx", Napi::String::New(ctx->env, n->ctx_json));
  ctx->out.Set(ctx->n++, o);
  return 0;
}

int ExportToJs(const struct fb_nbd_export_info* info, void* arg) {
  auto* ctx = static_cast<ForeachCtx*>(arg);
  Napi::Env env = ctx->env;
  Napi::Object o = Napi::Object::New(env);
  o.Set("exportName", Napi::String::New(env, info->export_name));
  o.Set("bdevName", Napi::String::New(env, info->bdev_name));
  o.Set("listen", Napi::String::New(env, info->listen));
  o.Set("readonly", Napi::Boolean::New(env, info->readonly));
  o.Set("connections", Napi::Number::New(env, info->connections));
  if (info->tls_psk_file) o.Set("tlsPskFile", Napi::String::New(env, info->tls_psk_file));
  if (info->tls_cert_file) o.Set("tlsCertFile", Napi::String::New(env, info->tls_cert_file));
  if (info->tls_key_file) o.Set("tlsKeyFile", Napi::String::New(env, info->tls_key_file));
  if (info->tls_ca_file) o.Set("tlsCaFile", Napi::String::New(env, info->tls_ca_file));
  if (info->tls_required) o.Set("tlsRequired", Napi::Boolean::New(env, true));
  ctx->out.Set(ctx->n++, o);
  return 0;
}

int VhostToJs(const struct fb_vhost_controller_info* info, void* arg) {
  auto* ctx = static_cast<ForeachCtx*>(arg);
  Napi::Env env = ctx->env;
  Napi::Object o = Napi::Object::New(env);
  o.Set("ctrlr", Napi::String::New(env, info->ctrlr));
  o.Set("bdevName", Napi::String::New(env, info->bdev_name));
  o.Set("socketPath", Napi::String::New(env, info->socket_path));
  o.Set("cpumask", info->cpumask ? Napi::Value(Napi::String::New(env, info->cpumask)) : env.Null());
  o.Set("readonly", Napi::Boolean::New(env, info->readonly));
  o.Set("connected", Napi::Boolean::New(env, info->connected));
  o.Set("numQueues", Napi::Number::New(env, info->num_queues));
  o.Set("activeQueues", Napi::Number::New(env, info->active_queues));
  o.Set("requests", Napi::Number::New(env, static_cast<double>(info->requests)));
  o.Set("badMessages", Napi::Number::New(env, static_cast<double>(info->bad_messages)));
  ctx->out.Set(ctx->n++, o);
  return 0;
}

// () -> [{method, module}]: every method fb_rpc_call serves (process-wide).
Napi::Value RpcMethods(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ForeachCtx ctx{env, Napi::Array::New(env), 0};
  fb_rpc_foreach_method(MethodToJs, &ctx);
  if (env.IsExceptionPending()) return env.Undefined();
  return ctx.out;
}

// ------------------------------------------------------------------ Engine

/**
 * JS class `Engine`: one fb_engine. new Engine({reactors, pollUs, ringEntries,
 * log?: (level, msg) => void}); every method throws an Error with `code` on
 * failure, and "ECLOSED" once destroy() has run.
 */
class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "Engine",
        {
            InstanceMethod<&Engine::Destroy>("destroy"),
            InstanceMethod<&Engine::ReactorCount>("reactorCount"),
            InstanceMethod<&Engine::ReactorCpuUs>("reactorCpuUs"),
            InstanceMethod<&Engine::Rpc>("rpc"),
            InstanceMethod<&Engine::Notifications>("notifications"),
            InstanceMethod<&Engine::BdevDelete>("bdevDelete"),
            InstanceMethod<&Engine::BdevStatsPerReactor>("bdevStatsPerReactor"),
            InstanceMethod<&Engine::BdevStatsReset>("bdevStatsReset"),
            InstanceMethod<&Engine::BdevList>("bdevList"),
            InstanceMethod<&Engine::BdevIoTypes>("bdevIoTypes"),
            InstanceMethod<&Engine::NbdExportAdd>("nbdExportAdd"),
            InstanceMethod<&Engine::NbdExportRemove>("nbdExportRemove"),
            InstanceMethod<&Engine::NbdExportList>("nbdExportList"),
            InstanceMethod<&Engine::VhostBlkControllerCreate>("vhostBlkControllerCreate"),
            InstanceMethod<&Engine::VhostBlkControllerDelete>("vhostBlkControllerDelete"),
            InstanceMethod<&Engine::VhostControllerList>("vhostControllerList"),
        });
  }

  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      ThrowArgType(env, "0 (options) must be an object");
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    struct fb_engine_opts opts;
    fb_engine_opts_init(&opts);
    unsigned nbd_mem_mib = 0, malloc_mem_mib = 0;
    if (!ReadUint(o, "reactors", &opts.reactors) || !ReadUint(o, "pollUs", &opts.poll_us) ||
        !ReadUint(o, "ringEntries", &opts.ring_entries) || !ReadUint(o, "nbdMemLimitMiB", &nbd_mem_mib) ||
        !ReadUint(o, "nbdStallTimeoutMs", &opts.nbd_stall_timeout_ms) ||
        !ReadUint(o, "nbdPayloadTimeoutMs", &opts.nbd_payload_timeout_ms) ||
        !ReadUint(o, "mallocMemLimitMiB", &malloc_mem_mib) ||
        !ReadUint(o, "nbdMaxConnsPerExport", &opts.nbd_max_conns_per_export) ||
        !ReadUint(o, "nbdMaxConnsPerClient", &opts.nbd_max_conns_per_client)) {
      return;
    }
    opts.nbd_mem_limit = (size_t)nbd_mem_mib << 20;
    opts.malloc_mem_limit = (size_t)malloc_mem_mib << 20;
    Napi::Value log = o.Get("log");
    if (log.IsFunction()) {
      log_ = new LogTsfn(LogTsfn::New(env, log.As<Napi::Function>(), "flexbso-engine-log", 0, 1));
      log_->Unref(env);
      opts.log = EngineLog;
      opts.log_arg = log_;
    } else if (!log.IsUndefined()) {
      ThrowArgType(env, "options.log must be a function");
      return;
    }
    struct fb_err err = {};
    int rc = fb_engine_create(&opts, &engine_, &err);
    if (rc != 0) {
      engine_ = nullptr;
      ReleaseLog();
      ThrowEngineError(env, rc, err, "fb_engine_create");
    }
  }

  ~Engine() override { Close(); }

 private:
  bool ReadUint(Napi::Object o, const char* key, unsigned* out) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return true;
    if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 ||
        v.As<Napi::Number>().DoubleValue() > 4294967295.0) {
      ThrowArgType(Env(), (std::string("options.") + key + " must be an unsigned 32-bit integer").c_str());
      return false;
    }
    *out = v.As<Napi::Number>().Uint32Value();
    return true;
  }

  void ReleaseLog() {
    if (log_ != nullptr) {
      log_->Release();
      delete log_;
      log_ = nullptr;
    }
  }

  void Close() {
    if (engine_ != nullptr) {
      fb_engine_destroy(engine_);
      engine_ = nullptr;
    }
    ReleaseLog();
  }

  /** The live engine, or nullptr with an ECLOSED error pending. */
  struct fb_engine* Live(Napi::Env env) {
    if (engine_ == nullptr) {
      Napi::Error e = Napi::Error::New(env, "the engine was destroyed; create a new Engine");
      e.Set("code", Napi::String::New(env, "ECLOSED"));
      e.ThrowAsJavaScriptException();
    }
    return engine_;
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }

  Napi::Value ReactorCount(const Napi::CallbackInfo& info) {
    struct fb_engine* e = Live(info.Env());
    if (e == nullptr) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), fb_engine_reactor_count(e));
  }

  Napi::Value ReactorCpuUs(const Napi::CallbackInfo& info) {
    struct fb_engine* e = Live(info.Env());
    if (e == nullptr) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(fb_engine_reactor_cpu_us(e)));
  }

  // (method, paramsJson: string | null) -> result JSON text. Errors carry
  // errno = the engine's code: a negative errno, or -32601 / -32602.
  Napi::Value Rpc(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    bool has_params = info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull();
    if (!IsString(info, 0) || (has_params && !IsString(info, 1))) {
      return ThrowArgType(env, "list must be (method: string, paramsJson: string | null)");
    }
    std::string method = info[0].As<Napi::String>();
    std::string params = has_params ? std::string(info[1].As<Napi::String>()) : std::string();
    struct fb_err err = {};
    char* result = nullptr;
    int rc = fb_rpc_call(e, method.c_str(), has_params ? params.c_str() : nullptr, &result, &err);
    if (rc != 0) {
      if (rc == FB_RPC_METHOD_NOT_FOUND || rc == FB_RPC_INVALID_PARAMS) {
        Napi::Error x = Napi::Error::New(env, err.msg[0] != '\0' ? err.msg : "invalid request");
        x.Set("code", Napi::String::New(env, rc == FB_RPC_METHOD_NOT_FOUND ? "ERPC_METHOD" : "ERPC_PARAMS"));
        x.Set("errno", Napi::Number::New(env, rc));
        x.Set("syscall", Napi::String::New(env, "fb_rpc_call"));
        x.ThrowAsJavaScriptException();
        return env.Undefined();
      }
      return ThrowEngineError(env, rc, err, "fb_rpc_call");
    }
    Napi::String out = Napi::String::New(env, result != nullptr ? result : "null");
    free(result);
    return out;
  }

  // (sinceId, max) -> {dropped, items: [{id, type, ctx (JSON text)}]}
  Napi::Value Notifications(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsUint(info, 0) || !IsUint(info, 1)) {
      return ThrowArgType(env, "list must be (sinceId: uint, max: uint)");
    }
    ForeachCtx ctx{env, Napi::Array::New(env), 0};
    uint64_t dropped = fb_notify_foreach(e, U64(info[0]), static_cast<size_t>(U64(info[1])),
                                         NotificationToJs, &ctx);
    if (env.IsExceptionPending()) return env.Undefined();
    Napi::Object o = Napi::Object::New(env);
    o.Set("dropped", Num(env, dropped));
    o.Set("items", ctx.out);
    return o;
  }

  // (name) -> [{reactor, stats}]
  Napi::Value BdevStatsPerReactor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0)) return ThrowArgType(env, "0 (name) must be a string");
    std::string name = info[0].As<Napi::String>();
    ForeachCtx ctx{env, Napi::Array::New(env), 0};
    int rc = fb_bdev_stats_per_reactor(e, name.c_str(), ReactorStatsToJs, &ctx);
    if (env.IsExceptionPending()) return env.Undefined();
    if (rc != 0) {
      struct fb_err err = {};
      snprintf(err.msg, sizeof(err.msg), "bdev '%s' does not exist; list bdevs with bdev_get_bdevs",
               name.c_str());
      return ThrowEngineError(env, rc, err, "fb_bdev_stats_per_reactor");
    }
    return ctx.out;
  }

  // (name | null, maxminOnly)
  Napi::Value BdevStatsReset(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    bool one = info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull();
    if ((one && !IsString(info, 0)) || info.Length() < 2 || !info[1].IsBoolean()) {
      return ThrowArgType(env, "list must be (name: string | null, maxminOnly: boolean)");
    }
    std::string name = one ? std::string(info[0].As<Napi::String>()) : std::string();
    int rc = fb_bdev_stats_reset(e, one ? name.c_str() : nullptr, info[1].As<Napi::Boolean>());
    if (rc != 0) {
      struct fb_err err = {};
      snprintf(err.msg, sizeof(err.msg), "bdev '%s' does not exist; list bdevs with bdev_get_bdevs",
               name.c_str());
      return ThrowEngineError(env, rc, err, "fb_bdev_stats_reset");
    }
    return env.Undefined();
  }

  // (name)
  Napi::Value BdevDelete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0)) return ThrowArgType(env, "0 (name) must be a string");
    std::string name = info[0].As<Napi::String>();
    struct fb_err err = {};
    int rc = fb_bdev_delete(e, name.c_str(), &err);
    if (rc != 0) return ThrowEngineError(env, rc, err, "fb_bdev_delete");
    return env.Undefined();
  }

  // (name?) -> BdevInfo[]
  Napi::Value BdevList(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    std::string name;
    bool one = info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull();
    if (one) {
      if (!info[0].IsString()) return ThrowArgType(env, "0 (name) must be a string or undefined");
      name = info[0].As<Napi::String>();
    }
    ForeachCtx ctx{env, Napi::Array::New(env), 0};
    int rc = fb_bdev_foreach(e, one ? name.c_str() : nullptr, BdevToJs, &ctx);
    if (env.IsExceptionPending()) return env.Undefined();
    if (rc != 0) {
      struct fb_err err = {};
      if (rc == -ENOENT) {
        snprintf(err.msg, sizeof(err.msg), "bdev '%s' does not exist; list bdevs with bdev_get_bdevs",
                 name.c_str());
      }
      return ThrowEngineError(env, rc, err, "fb_bdev_foreach");
    }
    return ctx.out;
  }

  // (name) -> {read, write, flush, unmap, write_zeroes: boolean}
  Napi::Value BdevIoTypes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0)) return ThrowArgType(env, "0 (name) must be a string");
    std::string name = info[0].As<Napi::String>();
    struct fb_err err = {};
    struct fb_bdev_desc* desc = nullptr;
    int rc = fb_bdev_open(e, name.c_str(), nullptr, &desc, &err);
    if (rc != 0) return ThrowEngineError(env, rc, err, "fb_bdev_open");
    struct fb_bdev* bdev = fb_bdev_desc_get_bdev(desc);
    Napi::Object o = Napi::Object::New(env);
    // zcopy is left out: lib does not report it (yet), and error injection has no use for it.
    for (int t = 0; t < FB_IO_ZCOPY; t++) {
      o.Set(IoTypeName(t), Napi::Boolean::New(env, fb_bdev_io_type_supported(bdev, static_cast<enum fb_io_type>(t))));
    }
    fb_bdev_close(desc);
    return o;
  }

  // (exportName, bdevName, listen, readonly)
  Napi::Value NbdExportAdd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0) || !IsString(info, 1) || !IsString(info, 2) || info.Length() < 4 ||
        !info[3].IsBoolean() || (info.Length() > 4 && !info[4].IsObject() && !info[4].IsUndefined())) {
      return ThrowArgType(env,
                          "list must be (exportName: string, bdevName: string, listen: string, readonly: boolean, "
                          "tls?: {pskFile?, certFile?, keyFile?, caFile?, required?})");
    }
    std::string exp = info[0].As<Napi::String>();
    std::string bdev = info[1].As<Napi::String>();
    std::string listen = info[2].As<Napi::String>();
    struct fb_nbd_export_opts opts;
    fb_nbd_export_opts_init(&opts);
    opts.readonly = info[3].As<Napi::Boolean>();
    std::string files[4];
    if (info.Length() > 4 && info[4].IsObject()) {
      Napi::Object t = info[4].As<Napi::Object>();
      const char* keys[4] = {"pskFile", "certFile", "keyFile", "caFile"};
      const char** dst[4] = {&opts.tls_psk_file, &opts.tls_cert_file, &opts.tls_key_file, &opts.tls_ca_file};
      for (int i = 0; i < 4; i++) {
        Napi::Value v = t.Get(keys[i]);
        if (v.IsUndefined() || v.IsNull()) continue;
        if (!v.IsString()) return ThrowArgType(env, (std::string("tls.") + keys[i] + " must be a string").c_str());
        files[i] = v.As<Napi::String>();
        *dst[i] = files[i].c_str();
      }
      Napi::Value req = t.Get("required");
      if (!req.IsUndefined() && !req.IsNull()) {
        if (!req.IsBoolean()) return ThrowArgType(env, "tls.required must be a boolean");
        opts.tls_required = req.As<Napi::Boolean>();
      }
    }
    struct fb_err err = {};
    int rc = fb_nbd_export_create(e, exp.c_str(), bdev.c_str(), listen.c_str(), &opts, &err);
    if (rc != 0) return ThrowEngineError(env, rc, err, "fb_nbd_export_create");
    return env.Undefined();
  }

  // (exportName)
  Napi::Value NbdExportRemove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0)) return ThrowArgType(env, "0 (exportName) must be a string");
    std::string exp = info[0].As<Napi::String>();
    struct fb_err err = {};
    int rc = fb_nbd_export_remove(e, exp.c_str(), &err);
    if (rc != 0) return ThrowEngineError(env, rc, err, "fb_nbd_export_remove");
    return env.Undefined();
  }

  // () -> NbdExportInfo[]
  Napi::Value NbdExportList(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    ForeachCtx ctx{env, Napi::Array::New(env), 0};
    int rc = fb_nbd_export_foreach(e, ExportToJs, &ctx);
    if (env.IsExceptionPending()) return env.Undefined();
    if (rc != 0) {
      struct fb_err err = {};
      return ThrowEngineError(env, rc, err, "fb_nbd_export_foreach");
    }
    return ctx.out;
  }

  // (ctrlr, bdevName, socketDir, {cpumask?, readonly?, numQueues?, socketMode?})
  Napi::Value VhostBlkControllerCreate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0) || !IsString(info, 1) || !IsString(info, 2) || info.Length() < 4 ||
        !info[3].IsObject()) {
      return ThrowArgType(env, "list must be (ctrlr: string, bdevName: string, socketDir: string, options: object)");
    }
    std::string ctrlr = info[0].As<Napi::String>();
    std::string bdev = info[1].As<Napi::String>();
    std::string dir = info[2].As<Napi::String>();
    Napi::Object o = info[3].As<Napi::Object>();
    struct fb_vhost_blk_opts opts;
    fb_vhost_blk_opts_init(&opts);
    std::string mask;
    Napi::Value m = o.Get("cpumask");
    if (!m.IsUndefined() && !m.IsNull()) {
      if (!m.IsString()) return ThrowArgType(env, "options.cpumask must be a string");
      mask = m.As<Napi::String>();
      opts.cpumask = mask.c_str();
    }
    Napi::Value ro = o.Get("readonly");
    if (!ro.IsUndefined()) {
      if (!ro.IsBoolean()) return ThrowArgType(env, "options.readonly must be a boolean");
      opts.readonly = ro.As<Napi::Boolean>();
    }
    if (!ReadUint(o, "numQueues", &opts.num_queues) || !ReadUint(o, "socketMode", &opts.socket_mode)) {
      return env.Undefined();
    }
    struct fb_err err = {};
    int rc = fb_vhost_blk_controller_create(e, ctrlr.c_str(), bdev.c_str(), dir.c_str(), &opts, &err);
    if (rc != 0) return ThrowEngineError(env, rc, err, "fb_vhost_blk_controller_create");
    return env.Undefined();
  }

  // (ctrlr)
  Napi::Value VhostBlkControllerDelete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    if (!IsString(info, 0)) return ThrowArgType(env, "0 (ctrlr) must be a string");
    std::string ctrlr = info[0].As<Napi::String>();
    struct fb_err err = {};
    int rc = fb_vhost_blk_controller_delete(e, ctrlr.c_str(), &err);
    if (rc != 0) return ThrowEngineError(env, rc, err, "fb_vhost_blk_controller_delete");
    return env.Undefined();
  }

  // () -> VhostControllerInfo[]
  Napi::Value VhostControllerList(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    struct fb_engine* e = Live(env);
    if (e == nullptr) return env.Undefined();
    ForeachCtx ctx{env, Napi::Array::New(env), 0};
    int rc = fb_vhost_blk_controller_foreach(e, nullptr, VhostToJs, &ctx);
    if (env.IsExceptionPending()) return env.Undefined();
    if (rc != 0) {
      struct fb_err err = {};
      return ThrowEngineError(env, rc, err, "fb_vhost_blk_controller_foreach");
    }
    return ctx.out;
  }

  struct fb_engine* engine_ = nullptr;
  LogTsfn* log_ = nullptr;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", Engine::Init(env));
  Napi::Object io = Napi::Object::New(env);
  // Stops before zcopy, like BdevIoTypes.
  for (int t = 0; t < FB_IO_ZCOPY; t++) io.Set(IoTypeName(t), Napi::Number::New(env, t));
  exports.Set("ioTypes", io);
  exports.Set("rpcMethods", Napi::Function::New(env, RpcMethods, "rpcMethods"));
  return exports;
}

}  // namespace

NODE_API_MODULE(flexbso_native, Init)
