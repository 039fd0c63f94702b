"""What a pipeline is: the component contract, the registry of types, pipeline.toml, the presets commands build."""
