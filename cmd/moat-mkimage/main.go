// Command moat-mkimage builds the busybox test image from the host's
// busybox-static: a rootfs directory (-rootfs) and/or an LXD unified image
// tarball (-o), printing the tarball's fingerprint.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/moat/moat/internal/testimage"
)

func main() {
	rootfs := flag.String("rootfs", "", "build a rootfs directory here")
	out := flag.String("o", "", "write a unified image tarball here and print its fingerprint")
	flag.Parse()
	if *rootfs == "" && *out == "" {
		fmt.Fprintln(os.Stderr, "usage: moat-mkimage [-rootfs DIR] [-o IMAGE.tar.gz]")
		os.Exit(2)
	}
	if err := run(*rootfs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "moat-mkimage:", err)
		os.Exit(1)
	}
}

func run(rootfs, out string) error {
	if rootfs != "" {
		if err := testimage.BuildRootfs(rootfs); err != nil {
			return err
		}
	}
	if out == "" {
		return nil
	}
	var fp string
	var err error
	if rootfs != "" {
		fp, err = writeFrom(rootfs, out)
	} else {
		fp, err = testimage.BuildImage(out)
	}
	if err != nil {
		return err
	}
	fmt.Println(fp)
	return nil
}

func writeFrom(rootfs, out string) (string, error) {
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	fp, err := testimage.WriteUnified(f, rootfs, time.Now())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return fp, err
}
