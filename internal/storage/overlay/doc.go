// Package overlay mounts a container's root filesystem as an overlay over
// its (never written) image, and does the host-side work that layout
// needs: a user namespace carrying a container's ID map (for the idmapped
// lower layer), finding and removing overlay mounts, shifting the owners of
// an upper layer to a new ID map, and removing a tree without ever
// crossing into another mount.
//
// Layout: the lower layer is a detached, read-only clone of the image's
// rootfs, idmapped through the container's map for unprivileged
// containers. It is never attached at a path, so nothing walking the host
// tree (a recursive removal, a backup) can reach the image through it. The
// upper layer is a plain directory; the kernel refuses an idmapped upper
// layer, so it stores host ids (container root writes land on disk as the
// map's host id for 0).
package overlay
