package wechat

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/cache"
)

// RedisCache adapts a go-redis v9 UniversalClient to silenceper's cache.Cache
// (and cache.ContextCache), so all processes share each account's access
// token through the same Redis asynq uses. (silenceper's own cache.Redis is
// built on go-redis v8.) Values are stored as Redis strings and come back
// from Get as string, which is what silenceper's token handles expect.
// Keys are silenceper's (see TokenCacheKey) and do not collide with asynq's
// "asynq:" keys.
type RedisCache struct {
	client redis.UniversalClient
}

var _ cache.ContextCache = (*RedisCache)(nil)

// NewRedisCache returns a RedisCache on client.
func NewRedisCache(client redis.UniversalClient) *RedisCache {
	return &RedisCache{client: client}
}

// Get returns key's value as a string, or nil when it is missing or Redis
// fails (the Sender then fetches a new token).
func (r *RedisCache) Get(key string) any { return r.GetContext(context.Background(), key) }

// GetContext is Get with a context.
func (r *RedisCache) GetContext(ctx context.Context, key string) any {
	v, err := r.client.Get(ctx, key).Result()
	if err != nil {
		return nil
	}
	return v
}

// Set stores val under key for timeout; 0 means no expiry. A negative
// timeout (already expired) deletes key instead, since go-redis would read it
// as KEEPTTL.
func (r *RedisCache) Set(key string, val any, timeout time.Duration) error {
	return r.SetContext(context.Background(), key, val, timeout)
}

// SetContext is Set with a context.
func (r *RedisCache) SetContext(ctx context.Context, key string, val any, timeout time.Duration) error {
	if timeout < 0 {
		return r.DeleteContext(ctx, key)
	}
	return r.client.Set(ctx, key, val, timeout).Err()
}

// IsExist reports whether key exists.
func (r *RedisCache) IsExist(key string) bool { return r.IsExistContext(context.Background(), key) }

// IsExistContext is IsExist with a context.
func (r *RedisCache) IsExistContext(ctx context.Context, key string) bool {
	n, err := r.client.Exists(ctx, key).Result()
	return err == nil && n > 0
}

// Delete removes key; a missing key is not an error.
func (r *RedisCache) Delete(key string) error { return r.DeleteContext(context.Background(), key) }

// DeleteContext is Delete with a context.
func (r *RedisCache) DeleteContext(ctx context.Context, key string) error {
	err := r.client.Del(ctx, key).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}
