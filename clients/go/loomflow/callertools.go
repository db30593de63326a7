package loomflow

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
)

// ToolHandler runs one caller tool: it gets the run's context (user, session,
// run id) and the arguments the model wrote, and returns the output the model
// reads. An error is handed to the model as the tool's (failed) result.
type ToolHandler func(ctx context.Context, run RunContext, arguments map[string]any) (string, error)

// RunContext is the run a caller tool works for; UserID is empty for the
// anonymous partition.
type RunContext struct {
	UserID, SessionID, RunID string
}

// CallerTool is a tool the caller declares on a run and runs itself.
type CallerTool struct {
	Name, Description string
	// Parameters is the JSON Schema of the arguments (an object schema).
	Parameters map[string]any
	Handler    ToolHandler
}

// Declaration is the tool as RunOptions.caller_tools carries it.
func (t CallerTool) Declaration() (*loomflowv1.CallerTool, error) {
	schema := t.Parameters
	if schema == nil {
		schema = map[string]any{"type": "object", "properties": map[string]any{}}
	}
	parameters, err := structpb.NewStruct(schema)
	if err != nil {
		return nil, fmt.Errorf("tool %s: parameters are not a JSON object: %w", t.Name, err)
	}
	return &loomflowv1.CallerTool{Name: t.Name, Description: t.Description, Parameters: parameters}, nil
}

// RunWithTools declares the tools on the request, runs it, and while the run
// pauses with RUN_STATUS_REQUIRES_ACTION runs the pending calls with their
// handlers and continues it (ContinueRun) until the run ends. A pending call
// of a tool it has no handler for ends the loop: the paused response is
// returned, for the caller to continue itself.
func (c *Client) RunWithTools(ctx context.Context, request *loomflowv1.RunRequest, tools ...CallerTool) (*loomflowv1.RunResponse, error) {
	handlers := make(map[string]ToolHandler, len(tools))
	for _, tool := range tools {
		declared, err := tool.Declaration()
		if err != nil {
			return nil, err
		}
		request.Options.CallerTools = append(request.Options.CallerTools, declared)
		handlers[tool.Name] = tool.Handler
	}
	reply, err := c.Agent.Run(ctx, request)
	for err == nil && reply.GetStatus() == loomflowv1.RunStatus_RUN_STATUS_REQUIRES_ACTION {
		run := RunContext{UserID: request.GetScope().GetUserId(), SessionID: request.GetOptions().GetSessionId(), RunID: reply.GetRunId()}
		results := make([]*loomflowv1.ToolResult, 0, len(reply.GetPendingToolCalls()))
		for _, call := range reply.GetPendingToolCalls() {
			handler, ok := handlers[call.GetToolName()]
			if !ok {
				return reply, nil
			}
			output, failed := handler(ctx, run, call.GetArguments().AsMap())
			result := &loomflowv1.ToolResult{CallId: call.GetCallId(), Output: output}
			if failed != nil {
				result.Output, result.IsError = failed.Error(), true
			}
			results = append(results, result)
		}
		var resumed *loomflowv1.ContinueRunResponse
		resumed, err = c.Agent.ContinueRun(ctx, &loomflowv1.ContinueRunRequest{
			Scope: request.GetScope(), RunId: reply.GetRunId(), Results: results,
		})
		reply = resumed.GetResult()
	}
	return reply, err
}

// JSONOutput turns any value into a tool output (strings as they are, the rest as JSON).
func JSONOutput(value any) (string, error) {
	if text, ok := value.(string); ok {
		return text, nil
	}
	encoded, err := json.Marshal(value)
	return string(encoded), err
}
