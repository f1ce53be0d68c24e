# Shared helpers for the vhost-user-blk tests. Source it; needs $SERVE (the
# fb_nbd_serve binary, which also serves --vhost controllers) and $VHOST
# (tools/fb_vhost, the initiator). Reuses the NBD tests' server helpers.
. "$(dirname "$0")/../nbd/lib.sh"
: "${VHOST:?set VHOST to the fb_vhost binary}"
mkdir -p "$T/vh"

# vh ARGS...: the initiator with a deadline.
vh() { timeout "${VH_TIMEOUT:-120}" "$VHOST" "$@"; }
