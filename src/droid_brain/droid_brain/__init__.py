"""droid_brain: the droid's LLM brain, tool executor, mode manager, personas and memory.

Plain-Python logic (no rclpy): chunker, memory, personas, tools, mock_llm, llm_openai,
stream, retry, engine, sentiment, clock, colours. Node shells: brain_node,
tool_executor_node, mode_manager_node.
"""
