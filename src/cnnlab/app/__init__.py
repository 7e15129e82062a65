"""The Streamlit web app: Classify, Explain and Model pages over cnnlab bundles (UI only;
every computation is a library call). Start it with `cnnlab app [BUNDLE|NAME]`."""
