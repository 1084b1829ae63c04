// ambit-cni: the chained CNI plugin that tells the node agent about each pod's network namespace.
//
// It is a relay: it forwards the CNI_* variables and the network configuration to the agent's unix
// socket and prints what the agent answers (src/ztunnel/inpod/cni-protocol.ts has the format and all
// the decisions). The container runtime runs it from /opt/cni/bin on the host, where Node.js may not
// exist, hence a small native program.
//
// The network configuration (the plugin's entry in the node's CNI config list) may set:
//   "socket":     the agent's unix socket (default /var/run/ambit/cni.sock); the AMBIT_CNI_SOCKET
//                 environment variable overrides it, for tests;
//   "failPolicy": what ADD does when the agent cannot be reached (not started yet, restarting, or no
//                 answer in time):
//                 "open" (default): ADD succeeds and passes the previous plugin's result through; the
//                   pod starts uncaptured and the agent takes it up when it (re)starts, by scanning the
//                   node's network namespaces. A pod is never kept from starting by the mesh being down.
//                 "closed": ADD fails with CNI error 11 (try again later), so the kubelet retries the
//                   pod sandbox until the agent answers: no pod of the node ever runs uncaptured.
// DEL, CHECK and the rest always succeed when the agent is unreachable: a pod's teardown must not hang
// on the mesh.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

const char* kDefaultSocket = "/var/run/ambit/cni.sock";
const char* kVariables[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};
// The longest the agent takes over an ADD is twice AMBIT_CNI_ADD_TIMEOUT (at most 50 s: waiting for the
// pod to appear in the mesh config, then for its listeners) plus installing its rules; the runtime's
// own timeout is minutes.
const int kTimeoutSeconds = 120;

std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      return out;
    }
  }
}

// MSG_NOSIGNAL: an agent that closes the connection early is an error to report (EPIPE), not a signal
// that kills the plugin before it can apply its fail policy.
bool SendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Index just past the JSON value starting at s[i] (after whitespace), or npos if malformed.
size_t SkipValue(const std::string& s, size_t i) {
  while (i < s.size() && isspace(static_cast<unsigned char>(s[i]))) i++;
  if (i >= s.size()) return std::string::npos;
  if (s[i] == '"') {
    for (i++; i < s.size(); i++) {
      if (s[i] == '\\') {
        i++;
      } else if (s[i] == '"') {
        return i + 1;
      }
    }
    return std::string::npos;
  }
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < s.size(); i++) {
      char c = s[i];
      if (c == '"') {
        size_t end = SkipValue(s, i);
        if (end == std::string::npos) return end;
        i = end - 1;
      } else if (c == '{' || c == '[') {
        depth++;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return std::string::npos;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && !isspace(static_cast<unsigned char>(s[i]))) i++;
  return i;
}

// The raw text of a top-level member of a JSON object, or "" if absent.
std::string TopLevelMember(const std::string& s, const std::string& key) {
  size_t i = s.find('{');
  if (i == std::string::npos) return "";
  i++;
  for (;;) {
    while (i < s.size() && (isspace(static_cast<unsigned char>(s[i])) || s[i] == ',')) i++;
    if (i >= s.size() || s[i] != '"') return "";
    size_t key_end = SkipValue(s, i);
    if (key_end == std::string::npos) return "";
    std::string name = s.substr(i + 1, key_end - i - 2);
    i = s.find(':', key_end);
    if (i == std::string::npos) return "";
    i++;
    while (i < s.size() && isspace(static_cast<unsigned char>(s[i]))) i++;
    size_t value_end = SkipValue(s, i);
    if (value_end == std::string::npos) return "";
    if (name == key) return s.substr(i, value_end - i);
    i = value_end;
  }
}

// The text of a JSON string value as TopLevelMember returns it ("\"/run/x.sock\""), unescaped; "" when
// it is not a string or uses an escape a path or a policy name has no need of.
std::string JsonString(const std::string& raw) {
  if (raw.size() < 2 || raw.front() != '"' || raw.back() != '"') return "";
  std::string out;
  for (size_t i = 1; i + 1 < raw.size(); i++) {
    char c = raw[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i + 1 >= raw.size()) return "";
    switch (raw[i]) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      default: return "";
    }
  }
  return out;
}

// What a chained plugin prints on ADD when it has nothing to add: the previous result.
int PassThrough(const std::string& command, const std::string& conf, const char* why) {
  fprintf(stderr, "ambit-cni: node agent not reachable (%s); pod not captured until the agent takes it up\n", why);
  if (command != "ADD") return 0;
  std::string prev = TopLevelMember(conf, "prevResult");
  if (prev.empty()) {
    std::string version = TopLevelMember(conf, "cniVersion");
    prev = "{\"cniVersion\":" + (version.empty() ? std::string("\"1.0.0\"") : version) + "}";
  }
  printf("%s", prev.c_str());
  return 0;
}

}  // namespace

// The agent could not be reached: apply the network configuration's failPolicy.
int Unreachable(const std::string& command, const std::string& conf, bool fail_closed, const char* why) {
  if (!fail_closed || command != "ADD") return PassThrough(command, conf, why);
  fprintf(stderr, "ambit-cni: node agent not reachable (%s); failPolicy closed, so the pod waits\n", why);
  std::string msg = std::string("the Ambit node agent is not reachable (") + why +
                    "); failPolicy is closed, so the pod is not started uncaptured";
  std::string escaped;
  for (char c : msg) {
    if (static_cast<unsigned char>(c) < 0x20) continue;
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"%s\"}", escaped.c_str());
  return 1;
}

int main() {
  // Belt and braces with MSG_NOSIGNAL: nothing this plugin writes may kill it with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  const char* command_env = getenv("CNI_COMMAND");
  std::string command = command_env ? command_env : "";
  std::string conf = ReadAll(STDIN_FILENO);
  if (command == "VERSION") {
    printf("{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}");
    return 0;
  }

  std::string request = "AMBIT-CNI 1\n";
  for (const char* name : kVariables) {
    const char* value = getenv(name);
    if (!value) continue;
    if (strchr(value, '\n')) {
      printf("{\"cniVersion\":\"1.0.0\",\"code\":4,\"msg\":\"%s contains a newline\"}", name);
      return 1;
    }
    request += std::string(name) + "=" + value + "\n";
  }
  request += "\n" + conf;

  std::string policy_raw = TopLevelMember(conf, "failPolicy");
  std::string policy = JsonString(policy_raw);
  if (!policy_raw.empty() && policy != "open" && policy != "closed") {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"failPolicy must be \\\"open\\\" or \\\"closed\\\"\"}");
    return 1;
  }
  bool fail_closed = policy == "closed";

  const char* path_env = getenv("AMBIT_CNI_SOCKET");
  std::string socket_raw = TopLevelMember(conf, "socket");
  std::string path = path_env && *path_env ? path_env
                     : !socket_raw.empty()  ? JsonString(socket_raw)
                                            : kDefaultSocket;
  if (path.empty()) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"socket must be a path\"}");
    return 1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Unreachable(command, conf, fail_closed, "socket path too long");
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unreachable(command, conf, fail_closed, strerror(errno));
  timeval tv{kTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    return Unreachable(command, conf, fail_closed, strerror(err));
  }
  if (!SendAll(fd, request) || shutdown(fd, SHUT_WR) != 0) {
    int err = errno;
    close(fd);
    return Unreachable(command, conf, fail_closed, strerror(err));
  }
  std::string response = ReadAll(fd);
  close(fd);
  size_t nl = response.find('\n');
  if (response.empty() || nl == std::string::npos) return Unreachable(command, conf, fail_closed, "no answer");
  int code = atoi(response.substr(0, nl).c_str());
  fwrite(response.data() + nl + 1, 1, response.size() - nl - 1, stdout);
  return code;
}
