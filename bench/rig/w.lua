-- W: PUT /api/v1/update/ai-model-config replacing seed 000's three models, the OpenAI one with
-- a new RSA-sealed key, as random users (needs seed.py --configs for sealed.lua). Like the
-- benchmark, each user sends the same sealed key every time; Vault decrypts it every time.
dofile(os.getenv("RIG_DIR") .. "/tokens.lua")
dofile(os.getenv("RIG_DIR") .. "/sealed.lua")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local i = math.random(1, #tokens)
  return wrk.format("PUT", "/api/v1/update/ai-model-config",
    {["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json"},
    '{"models":[{"provider":"OpenAI","type":"chat","model":"gpt-4o","apiKeyEncrypted":"' .. sealed[i] ..
    '","isPaid":true},{"provider":"Anthropic","type":"chat","model":"claude-2","isPaid":true},' ..
    '{"provider":"Ollama","type":"chat","model":"llama3","apiKeyEncrypted":null,"isPaid":false}],' ..
    '"system_prompt":"You are a helpful AI assistant."}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write(status .. " " .. body .. "\n") end
end
