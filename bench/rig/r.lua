-- R: GET /api/v1/get/ai-model-config, as random users.
dofile(os.getenv("RIG_DIR") .. "/tokens.lua")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format("GET", "/api/v1/get/ai-model-config",
    {["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)]})
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write(status .. " " .. body .. "\n") end
end
