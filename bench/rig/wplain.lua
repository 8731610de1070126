-- Wplain: PUT /api/user/api-keys with a new plain OpenAI key, as random users.
dofile(os.getenv("RIG_DIR") .. "/tokens.lua")
local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local function key()
  local t = {}
  for i = 1, 43 do local n = math.random(1, #chars); t[i] = chars:sub(n, n) end
  return "sk-proj-" .. table.concat(t)
end
request = function()
  return wrk.format("PUT", "/api/user/api-keys",
    {["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)], ["Content-Type"] = "application/json"},
    '{"openai":{"apiKey":"' .. key() .. '","modelId":"gpt-4o"}}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write(status .. " " .. body .. "\n") end
end
