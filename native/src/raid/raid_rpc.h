/* The raid module's JSON-RPC methods (raid_rpc.c). */
#ifndef FB_RAID_RPC_H
#define FB_RAID_RPC_H

#include "flexbso/bdev_module.h"

#define RAID_RPC_COUNT 8
extern const struct fb_rpc_method raid_rpc_methods[RAID_RPC_COUNT];

#endif
