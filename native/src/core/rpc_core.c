/* The core's own RPC methods (module "core"). */
#include "internal.h"
#include "rpc_core.h"

const struct fb_rpc_method *fb_rpc_core_methods(void)
{
	return NULL;
}

size_t fb_rpc_core_nmethods(void)
{
	return 0;
}
