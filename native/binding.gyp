{
  # The Node addon: the whole C engine (same sources as out/libflexbso.a, picked
  # up by glob so new files need no edit here) plus the node-addon-api shim.
  'targets': [
    {
      'target_name': 'flexbso_native',
      'sources': [
        '<!@(find src -name "*.c" -o -name "*.cc" | sort)'
      ],
      'include_dirs': [
        'include',
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      'defines': ['NAPI_VERSION=8', 'NAPI_DISABLE_CPP_EXCEPTIONS', '_GNU_SOURCE'],
      'cflags': ['-pthread', '-g'],
      'cflags_c': ['-std=c11', '-Wall', '-Wextra', '-Werror', '-O2'],
      'cflags_cc': ['-std=c++17', '-Wall', '-Wextra', '-O2'],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-std=gnu++17', '-std=gnu++14'],
      'ldflags': ['-pthread'],
      'libraries': ['-luring', '-ljansson', '-lisal', '-llz4', '-lzstd', '-lz', '-lgnutls', '-lm']
    }
  ]
}
