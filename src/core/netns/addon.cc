// The netns addon (DESIGN.md §5): the few socket operations Node.js cannot do itself. It opens a TCP
// socket inside the network namespace at a path, reads a redirected connection's original
// destination, sets a mark, and identifies a namespace file. Everything else (adopting the fds,
// connecting, accepting) stays in TypeScript: see index.ts.
//
// Every call runs synchronously on the calling (JavaScript) thread. setns() moves only the calling
// thread, so no other thread (libuv's pool, V8's helpers) ever sees the pod's namespace, and no
// JavaScript runs while this thread is inside it. A socket keeps the namespace it was created in
// for its whole life, so only socket() needs the switch; options, bind and listen act on the
// socket's own namespace and run after the thread is back home.
//
// Failures throw an Error carrying `syscall`, `errno` (a positive number), `netnsPath` (or null) and,
// where they apply, the socket `option` or the `file` opened; native.ts turns them into typed errors
// with errno names. Bad arguments throw a TypeError (native.ts checks them first).

#include <napi.h>

#ifdef __linux__

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

namespace {

// From linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, whose other declarations
// clash with the libc socket headers.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;
#ifndef IP_TRANSPARENT
constexpr int IP_TRANSPARENT = 19;
#endif
#ifndef IPV6_TRANSPARENT
constexpr int IPV6_TRANSPARENT = 75;
#endif

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

using OptionalPath = std::optional<std::string>;

/**
 * Throws the failed call as an Error with `syscall`, `errno`, `netnsPath` and, when they say more,
 * the socket `option` or the `file` it was about.
 */
[[noreturn]] void ThrowSyscall(Napi::Env env, const char* syscall, int err, const OptionalPath& netnsPath,
                               const char* option = nullptr, const char* file = nullptr) {
  std::string message = std::string(syscall);
  if (option != nullptr) message += " " + std::string(option);
  if (file != nullptr) message += " " + std::string(file);
  message += std::string(" failed: ") + std::strerror(err);
  if (netnsPath) message += " (netns " + *netnsPath + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("syscall", Napi::String::New(env, syscall));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("netnsPath", netnsPath ? Napi::Value(Napi::String::New(env, *netnsPath)) : env.Null());
  if (option != nullptr) error.Set("option", Napi::String::New(env, option));
  if (file != nullptr) error.Set("file", Napi::String::New(env, file));
  throw error;
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

/** Closes the descriptor it owns unless release()d, so that no error path leaks one. */
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

/**
 * Moves the calling thread into a network namespace and back. The way back runs in the destructor
 * too, so an exception between the two cannot leave the JavaScript thread in a pod's namespace.
 */
class NetnsSwitch {
 public:
  NetnsSwitch(Napi::Env env, const std::string& path)
      : target_(open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (target_.get() < 0) ThrowSyscall(env, "open", errno, path, nullptr, path.c_str());
    Fd home(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
    if (home.get() < 0) ThrowSyscall(env, "open", errno, path, nullptr, kThreadNetns);
    if (setns(target_.get(), CLONE_NEWNET) != 0) ThrowSyscall(env, "setns", errno, path);
    home_fd_ = home.release();
  }
  ~NetnsSwitch() { Leave(); }
  NetnsSwitch(const NetnsSwitch&) = delete;
  NetnsSwitch& operator=(const NetnsSwitch&) = delete;

  void Leave() {
    if (home_fd_ < 0) return;
    int fd = home_fd_;
    home_fd_ = -1;
    // Going back to the namespace the thread came from cannot fail short of the kernel taking the
    // capability away mid-call. If it ever did, every socket Node opened from then on would belong
    // to the pod: stopping the process is the only safe answer.
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    if (rc != 0) Napi::Error::Fatal("ambit_netns", "setns back to the agent's own network namespace failed");
  }

 private:
  Fd target_;
  int home_fd_ = -1;  // owned; -1 once the thread is back home
};

OptionalPath NetnsPathArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (v.IsNull() || v.IsUndefined()) return std::nullopt;
  if (!v.IsString()) ThrowType(info.Env(), "netnsPath must be a string or null");
  std::string path = v.As<Napi::String>().Utf8Value();
  if (path.empty()) ThrowType(info.Env(), "netnsPath must not be empty");
  return path;
}

int FamilyArg(Napi::Env env, Napi::Value v) {
  if (!v.IsNumber()) ThrowType(env, "family must be 4 or 6");
  int family = v.As<Napi::Number>().Int32Value();
  if (family != 4 && family != 6) ThrowType(env, "family must be 4 or 6");
  return family;
}

int FdArg(Napi::Env env, Napi::Value v) {
  if (!v.IsNumber()) ThrowType(env, "fd must be a non-negative integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 0x7fffffff) || d != static_cast<int>(d)) {
    ThrowType(env, "fd must be a non-negative integer");
  }
  return static_cast<int>(d);
}

uint32_t Uint32Arg(Napi::Env env, Napi::Value v, const char* name) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 0xffffffffu) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    ThrowType(env, std::string(name) + " must be an integer 0..4294967295");
  }
  return static_cast<uint32_t>(d);
}

bool FlagOption(Napi::Env env, const Napi::Object& opts, const char* name) {
  Napi::Value v = opts.Get(name);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) ThrowType(env, std::string("opts.") + name + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

void SetIntOption(Napi::Env env, int fd, int level, int name, const char* optionName, int value,
                  const OptionalPath& netnsPath) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) {
    ThrowSyscall(env, "setsockopt", errno, netnsPath, optionName);
  }
}

/** A numeric address and port as a sockaddr of the socket's family; a TypeError if it is not one. */
socklen_t FillSockaddr(Napi::Env env, int family, const Napi::Value& bindOpt, sockaddr_storage* out) {
  if (!bindOpt.IsObject()) ThrowType(env, "opts.bind must be { address, port }");
  Napi::Object bind = bindOpt.As<Napi::Object>();
  Napi::Value address = bind.Get("address");
  Napi::Value portValue = bind.Get("port");
  if (!address.IsString()) ThrowType(env, "opts.bind.address must be a numeric IP address string");
  double port = portValue.IsNumber() ? portValue.As<Napi::Number>().DoubleValue() : -1;
  if (!(port >= 0 && port <= 65535) || port != static_cast<int>(port)) {
    ThrowType(env, "opts.bind.port must be an integer 0..65535");
  }
  std::string text = address.As<Napi::String>().Utf8Value();
  std::memset(out, 0, sizeof *out);
  if (family == 4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, text.c_str(), &sin->sin_addr) != 1) {
      ThrowType(env, "opts.bind.address " + text + " is not an IPv4 address");
    }
    return sizeof *sin;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) != 1) {
    ThrowType(env, "opts.bind.address " + text + " is not an IPv6 address");
  }
  return sizeof *sin6;
}

/** openTcpSocket(netnsPath | null, opts) → fd. See index.ts for the options. */
Napi::Value OpenTcpSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionalPath netnsPath = NetnsPathArg(info, 0);
  if (!info[1].IsObject()) ThrowType(env, "opts must be an object");
  Napi::Object opts = info[1].As<Napi::Object>();

  // Read and check every option before touching the namespace, so that a bad option costs nothing.
  int family = FamilyArg(env, opts.Get("family"));
  bool transparent = FlagOption(env, opts, "transparent");
  bool reuseAddr = FlagOption(env, opts, "reuseAddr");
  bool reusePort = FlagOption(env, opts, "reusePort");
  Napi::Value markOpt = opts.Get("mark");
  std::optional<uint32_t> mark;
  if (!markOpt.IsUndefined()) mark = Uint32Arg(env, markOpt, "opts.mark");
  Napi::Value v6OnlyOpt = opts.Get("v6Only");
  if (!v6OnlyOpt.IsUndefined() && !v6OnlyOpt.IsBoolean()) ThrowType(env, "opts.v6Only must be a boolean");
  if (!v6OnlyOpt.IsUndefined() && family != 6) ThrowType(env, "opts.v6Only applies to family 6 only");
  Napi::Value bindOpt = opts.Get("bind");
  sockaddr_storage addr;
  socklen_t addrLen = 0;
  if (!bindOpt.IsUndefined()) addrLen = FillSockaddr(env, family, bindOpt, &addr);
  Napi::Value listenOpt = opts.Get("listen");
  std::optional<int> backlog;
  if (!listenOpt.IsUndefined()) {
    double d = listenOpt.IsNumber() ? listenOpt.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 1 && d <= 65535) || d != static_cast<int>(d)) {
      ThrowType(env, "opts.listen must be a backlog 1..65535");
    }
    if (bindOpt.IsUndefined()) ThrowType(env, "opts.listen needs opts.bind");
    backlog = static_cast<int>(d);
  }

  const int domain = family == 4 ? AF_INET : AF_INET6;
  const int type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
  int rawFd;
  if (netnsPath) {
    NetnsSwitch inside(env, *netnsPath);
    rawFd = socket(domain, type, 0);
    int err = errno;
    inside.Leave();
    if (rawFd < 0) ThrowSyscall(env, "socket", err, netnsPath);
  } else {
    rawFd = socket(domain, type, 0);
    if (rawFd < 0) ThrowSyscall(env, "socket", errno, netnsPath);
  }
  Fd fd(rawFd);

  if (reuseAddr) SetIntOption(env, fd.get(), SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 1, netnsPath);
  if (reusePort) SetIntOption(env, fd.get(), SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 1, netnsPath);
  if (mark) SetIntOption(env, fd.get(), SOL_SOCKET, SO_MARK, "SO_MARK", static_cast<int>(*mark), netnsPath);
  if (transparent) {
    if (family == 4) {
      SetIntOption(env, fd.get(), SOL_IP, IP_TRANSPARENT, "IP_TRANSPARENT", 1, netnsPath);
    } else {
      SetIntOption(env, fd.get(), SOL_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT", 1, netnsPath);
    }
  }
  if (!v6OnlyOpt.IsUndefined()) {
    int v6Only = v6OnlyOpt.As<Napi::Boolean>().Value() ? 1 : 0;
    SetIntOption(env, fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", v6Only, netnsPath);
  }
  if (addrLen > 0 && bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), addrLen) != 0) {
    ThrowSyscall(env, "bind", errno, netnsPath);
  }
  if (backlog && listen(fd.get(), *backlog) != 0) ThrowSyscall(env, "listen", errno, netnsPath);
  return Napi::Number::New(env, fd.release());
}

/** originalDst(fd, family) → { address, port }: where the client meant to go before REDIRECT/DNAT. */
Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(env, info[0]);
  int family = FamilyArg(env, info[1]);
  sockaddr_storage addr;
  std::memset(&addr, 0, sizeof addr);
  socklen_t len = sizeof addr;
  const char* originalDstName = family == 4 ? "SO_ORIGINAL_DST" : "IP6T_SO_ORIGINAL_DST";
  int rc = family == 4 ? getsockopt(fd, SOL_IP, kSoOriginalDst, &addr, &len)
                       : getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &addr, &len);
  if (rc != 0) ThrowSyscall(env, "getsockopt", errno, std::nullopt, originalDstName);
  char text[INET6_ADDRSTRLEN];
  uint16_t port;
  if (addr.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    port = ntohs(sin6->sin6_port);
  } else {
    ThrowSyscall(env, "getsockopt", EAFNOSUPPORT, std::nullopt, originalDstName);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("address", Napi::String::New(env, text));
  result.Set("port", Napi::Number::New(env, port));
  return result;
}

/** setMark(fd, mark): SO_MARK, so that the pod's capture rules let the agent's own traffic through. */
Napi::Value SetMark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(env, info[0]);
  uint32_t mark = Uint32Arg(env, info[1], "mark");
  SetIntOption(env, fd, SOL_SOCKET, SO_MARK, "SO_MARK", static_cast<int>(mark), std::nullopt);
  return env.Undefined();
}

/** netnsId(path) → { dev, ino }: two paths name the same namespace when both match. */
Napi::Value NetnsId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionalPath path = NetnsPathArg(info, 0);
  if (!path) ThrowType(env, "netnsPath must be a string");
  struct stat st;
  if (stat(path->c_str(), &st) != 0) ThrowSyscall(env, "stat", errno, path);
  Napi::Object result = Napi::Object::New(env);
  // nsfs device and inode numbers are 32-bit, well inside a double's exact range.
  result.Set("dev", Napi::Number::New(env, static_cast<double>(st.st_dev)));
  result.Set("ino", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  return result;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openTcpSocket", Napi::Function::New(env, OpenTcpSocket, "openTcpSocket"));
  exports.Set("originalDst", Napi::Function::New(env, OriginalDst, "originalDst"));
  exports.Set("setMark", Napi::Function::New(env, SetMark, "setMark"));
  exports.Set("netnsId", Napi::Function::New(env, NetnsId, "netnsId"));
  return exports;
}

#else  // !__linux__

// Network namespaces are Linux-only; elsewhere the module loads and exports nothing, and the
// TypeScript side reports the addon as unavailable.
Napi::Object Init(Napi::Env /*env*/, Napi::Object exports) { return exports; }

#endif

NODE_API_MODULE(ambit_netns, Init)
