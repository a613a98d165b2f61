//! One host's volume stack: image file, FUSE server, loop device, ext4.
