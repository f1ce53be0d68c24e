/* The core's own RPC methods (module "core", defined in bdev.c), served by
 * fb_rpc_call beside the modules' (not a public header). */
#ifndef FLEXBSO_CORE_RPC_CORE_H
#define FLEXBSO_CORE_RPC_CORE_H

#include <stddef.h>

#include "flexbso/bdev_module.h"

const struct fb_rpc_method *fb_rpc_core_methods(void);
size_t fb_rpc_core_nmethods(void);

#endif
