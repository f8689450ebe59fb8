"""Command-line tools without ROS: the reference receiver and the dashboard's rendering."""
