{
  # CPU-only build of the addon with node-gyp, for machines without CMake:
  #   npm run build:native:gyp     (node-gyp rebuild; offline add --nodedir=/path/to/node/headers)
  # The CMake build (CMakeLists.txt, cmake-js) is the primary one and the only one with CUDA.
  "variables": {
    "adamp_version": "<!(node -p \"require('./package.json').version\")",
    "adamp_cpu_flags": ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fvisibility=hidden"]
  },
  "target_defaults": {
    "cflags_cc": ["-std=c++17"],
    "cflags": ["<@(adamp_cpu_flags)"],
    "include_dirs": ["native/include", "native/cpu"],
    "xcode_settings": {
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CFLAGS": ["<@(adamp_cpu_flags)"]
    }
  },
  "conditions": [
    # adamp_mpi.node: MPI collectives for lib/distributed (native/mpi); MPI is loaded at run time
    # (dlopen), so nothing of MPI is needed to build it. Not on Windows.
    ["OS!='win'", {
      "targets": [{
        "target_name": "adamp_mpi",
        "sources": ["native/mpi/addon.cc"],
        "libraries": ["-ldl"],
        "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"],
        "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"]
      }]
    }]
  ],
  "targets": [
    {
      # The AVX2+FMA kernels, alone in their target so only they get -mavx2 -mfma (chosen at run time).
      "target_name": "adamp_avx2",
      "type": "static_library",
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", {
          "sources": ["native/cpu/kernels_avx2.cpp"],
          "cflags": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": { "OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c"] }
        }, {
          "sources": []
        }]
      ]
    },
    {
      "target_name": "adamp",
      "dependencies": [
        "adamp_avx2",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"
      ],
      "sources": [
        "native/binding/addon.cc",
        "native/binding/parse.cc",
        "native/cpu/step.cpp",
        "native/cpu/thread_pool.cpp",
        "native/cpu/kernels_portable.cpp"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "ADAMP_VERSION=\"<(adamp_version)\""
      ],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", { "defines": ["ADAMP_HAVE_AVX2_TU=1"] }]
      ]
    }
  ]
}
