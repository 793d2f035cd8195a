#!/usr/bin/env node
// A stdio MCP server, on the official TypeScript SDK, whose tool list changes while it runs:
// calling `add_tool` registers a new tool, and removing one unregisters it; the SDK then sends
// notifications/tools/list_changed. For tests/tests/mcp_client.rs.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "changing-tools", version: "1.0.0" });
const added = new Map();

server.registerTool(
  "add_tool",
  {
    description: "Adds a tool that answers with a fixed text.",
    inputSchema: { name: z.string(), answer: z.string() },
  },
  async ({ name, answer }) => {
    added.set(
      name,
      server.registerTool(name, { description: `Answers ${answer}.`, inputSchema: {} }, async () => ({
        content: [{ type: "text", text: answer }],
      })),
    );
    return { content: [{ type: "text", text: `added ${name}` }] };
  },
);

server.registerTool(
  "remove_tool",
  { description: "Removes a tool added with add_tool.", inputSchema: { name: z.string() } },
  async ({ name }) => {
    const tool = added.get(name);
    if (!tool) {
      return { content: [{ type: "text", text: `no tool ${name}` }], isError: true };
    }
    tool.remove();
    added.delete(name);
    return { content: [{ type: "text", text: `removed ${name}` }] };
  },
);

await server.connect(new StdioServerTransport());
