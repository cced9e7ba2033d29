"""The action engine, the lifecycle states and human decisions on actions."""
