{
  # The netns addon (DESIGN.md §5): Node-API only, so one build serves every Node version. Off Linux
  # the source compiles to an empty module, so that `npm ci` still succeeds on a laptop.
  "targets": [
    {
      "target_name": "ambit_netns",
      "sources": ["src/core/netns/addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    },
    {
      # The chained CNI plugin the DaemonSet's init step copies to /opt/cni/bin (cni/ambit-cni.cc). A
      # plain executable: the host that runs it may have no Node.js.
      "target_name": "ambit-cni",
      "type": "executable",
      "sources": ["cni/ambit-cni.cc"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "cflags_cc!": ["-fno-exceptions"],
      "conditions": [["OS!='linux'", { "type": "none", "sources": [] }]]
    }
  ]
}
