package registry

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sietch-vm/sietch/rootfs/dockerfile"
)

// Resolver is a dockerfile.Options.Resolve for registry bases: it fetches
// each base's manifest and config (no layers) with o. Bases of another
// kind (local images) are refused; wrap it to handle those.
func Resolver(ctx context.Context, o Options) func(dockerfile.Base) (dockerfile.Resolved, error) {
	return func(b dockerfile.Base) (dockerfile.Resolved, error) {
		if b.Kind != dockerfile.BaseImage {
			return dockerfile.Resolved{}, fmt.Errorf("a %s base is not in a registry", b.Kind)
		}
		img, err := Resolve(ctx, b.Ref, o)
		if err != nil {
			return dockerfile.Resolved{}, err
		}
		return dockerfile.Resolved{Digest: img.Digest.String(), Config: OCIConfig(img.Config)}, nil
	}
}

// OCIConfig is the runtime part of cf in image-spec's types.
func OCIConfig(cf *v1.ConfigFile) ocispec.ImageConfig {
	c := cf.Config
	return ocispec.ImageConfig{
		User:         c.User,
		ExposedPorts: c.ExposedPorts,
		Env:          c.Env,
		Entrypoint:   c.Entrypoint,
		Cmd:          c.Cmd,
		Volumes:      c.Volumes,
		WorkingDir:   c.WorkingDir,
		Labels:       c.Labels,
		StopSignal:   c.StopSignal,
	}
}
