// Package awscfg loads the AWS configuration every command and the worker
// daemon share: the SDK's standard chain (AWS_REGION, AWS_PROFILE,
// credentials, AWS_ENDPOINT_URL_DYNAMODB, the shared config files) with an
// optional region and DynamoDB endpoint on top, and builds the DynamoDB and
// DynamoDB Streams clients from it.
//
// Every call has an attempt timeout and an overall deadline, and the HTTP
// transport dial, TLS handshake and response header timeouts (see
// Timeouts, Apply).
//
// On a loopback endpoint (DynamoDB Local) the DynamoDB client does not check
// response checksums: the emulator's X-Amz-Crc32 header does not match its
// error bodies, and the SDK would warn of a mismatch on every failed
// condition.
package awscfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/smithy-go/logging"
)

// ErrNoRegion: neither the options nor the SDK's chain give a region.
var ErrNoRegion = errors.New("no AWS region: use --region, or set AWS_REGION or a profile's region")

// Options say what to apply on top of the SDK's chain.
type Options struct {
	// Region overrides the chain's region. Default "": the chain's.
	Region string
	// Endpoint is the DynamoDB endpoint URL (http or https), used for
	// DynamoDB Streams too. Default "": the chain's
	// (AWS_ENDPOINT_URL_DYNAMODB, the profile's endpoint_url) or AWS's.
	Endpoint string
	// Logger receives the SDK's log lines, and the warnings of failed
	// attempts (see Apply). Default nil: the SDK's default logger, and no
	// such warnings.
	Logger logging.Logger
	// Timeouts bound every call (see Apply). Default: the defaults of
	// Timeouts.
	Timeouts Timeouts
}

// CheckEndpoint returns an error unless endpoint is "" or an absolute http
// or https URL with a host.
func CheckEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http or https URL", endpoint)
	}
	return nil
}

// Load loads the SDK's default configuration with opts applied. It returns
// an error matching ErrNoRegion when no region is configured, and the SDK's
// error when the chain cannot be read (a bad profile, a bad shared file).
// The endpoint is applied by DynamoDB and Streams, not here.
func Load(ctx context.Context, opts Options) (aws.Config, error) {
	var fns []func(*config.LoadOptions) error
	if opts.Logger != nil {
		fns = append(fns, config.WithLogger(opts.Logger))
	}
	if opts.Region != "" {
		fns = append(fns, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, fns...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, ErrNoRegion
	}
	Apply(&cfg, opts.Timeouts, opts.Logger)
	return cfg, nil
}

// DynamoDB returns a DynamoDB client on cfg, with endpoint (when not "")
// as its base endpoint; on a loopback endpoint, whether given or from the
// chain, response checksums are not checked.
func DynamoDB(cfg aws.Config, endpoint string) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		// o.BaseEndpoint also holds $AWS_ENDPOINT_URL_DYNAMODB or the
		// profile's endpoint_url here.
		if IsLoopback(aws.ToString(o.BaseEndpoint)) {
			o.DisableValidateResponseChecksum = true
		}
	})
}

// Streams returns a DynamoDB Streams client on cfg. Its endpoint is
// endpoint when not ""; else the chain's for Streams
// (AWS_ENDPOINT_URL_DYNAMODB_STREAMS, the profile); else, when ddb's
// endpoint is a loopback address (DynamoDB Local, which serves both APIs on
// one port), ddb's; else AWS's. ddb may be nil.
func Streams(cfg aws.Config, endpoint string, ddb *dynamodb.Client) *dynamodbstreams.Client {
	return dynamodbstreams.NewFromConfig(cfg, func(o *dynamodbstreams.Options) {
		switch {
		case endpoint != "":
			o.BaseEndpoint = aws.String(endpoint)
		case o.BaseEndpoint == nil && ddb != nil:
			if ep := aws.ToString(ddb.Options().BaseEndpoint); IsLoopback(ep) {
				o.BaseEndpoint = aws.String(ep)
			}
		}
	})
}

// IsLoopback reports whether endpoint is a URL of this machine (localhost
// or a loopback IP address).
func IsLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
