-- luacheck's settings for the Redis functions (Sources/RedisStore/functions.lua): Redis runs Lua 5.1 with its
-- `redis` global; every registered function takes (keys, args), used or not.
std = "lua51"
read_globals = { "redis" }
max_line_length = 120
unused_args = false
