//! Architecture diagrams (SVG, Graphviz dot, Mermaid) drawn from a checked lab.
